import ArgumentParser

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Convert OCI images into Veil images.", subcommands: [ImageConvertCommand.self])
}

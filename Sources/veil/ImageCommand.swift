import ArgumentParser

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Convert OCI images into Veil images; build Veil's own image.", subcommands: [ImageConvertCommand.self, ImageSelfCommand.self])
}

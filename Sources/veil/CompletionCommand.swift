import ArgumentParser
import VeilLauncherCommands

/// `veil completion bash|zsh|fish`: the shell completion script (ArgumentParser's), to source
/// or install, e.g. `veil completion bash > /etc/bash_completion.d/veil`.
struct CompletionCommand: ParsableCommand {
    enum Shell: String, ExpressibleByArgument, CaseIterable { case bash, zsh, fish }

    static let configuration = CommandConfiguration(
        commandName: "completion", abstract: "Print the shell completion script for veil.",
        discussion: helpText("""
            bash: veil completion bash > /etc/bash_completion.d/veil (or: source <(veil completion bash))
            zsh:  veil completion zsh > "${fpath[1]}/_veil"
            fish: veil completion fish > ~/.config/fish/completions/veil.fish
            """))

    @Argument(help: "bash, zsh or fish.") var shell: Shell

    func run() {
        // The shells ArgumentParser knows are exactly these three.
        print(Veil.completionScript(for: CompletionShell(rawValue: shell.rawValue)!))
    }
}


/// The launcher and everything it needs to start in any image (glibc, musl or no libc): the
/// executable plus its dynamic loader and shared libraries, shipped under `/veil/` and
/// started through that loader so nothing in the image is used.
public struct LauncherFiles: Sendable {
    public struct File: Sendable {
        /// Path inside the image, relative (`veil/lib/libc.so.6`).
        public var imagePath: String
        public var hostPath: String

        public init(imagePath: String, hostPath: String) {
            self.imagePath = imagePath
            self.hostPath = hostPath
        }
    }

    public var files: [File]
    /// The wrapped entrypoint's prefix: loader, its options, the launcher.
    public var entrypoint: [String]

    public init(files: [File], entrypoint: [String]) {
        self.files = files
        self.entrypoint = entrypoint
    }
}

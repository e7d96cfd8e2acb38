import ArgumentParser
import Crypto
import Foundation
import Glibc
import VeilAttestation
import VeilCore
import VeilHostTools
import VeilImage
import VeilLauncherCommands
import VeilRuntime

/// Image conversion throughput against `sha256sum` over the same bytes, and container start
/// of a converted image under `veil run` against `runc run` of the original, in one run.
struct BenchImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Image convert throughput vs sha256sum, and veil run vs runc run start time.",
        discussion: "Needs runc; starts its own simulated coordinator (development only: no confidentiality).")

    @Option(help: ArgumentHelp("Directory whose files fill the benchmark image (realistic compressibility).", valueName: "dir"))
    var payload = "/usr/lib/x86_64-linux-gnu"
    @Option(help: "Payload size limit in MiB.") var megabytes = 256
    @Option(help: "Repetitions for conversion (best is reported).") var repetitions = 3
    @Option(help: "Container starts to time (median reported).") var starts = 10
    @OptionGroup var record: RecordOption

    func run() async throws {
        let (veil, work) = try Bench.setUp("image")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let launcher = try LauncherFiles.resolve(executable: try LauncherFiles.besideThisExecutable())
        print("veil-bench image: \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var results = BenchRecord(benchmark: "image")

        // 1. Conversion throughput, for gzip layers (the usual) and uncompressed layers.
        let files = try Self.payloadFiles(payload, megabytes: megabytes)
        for gzip in [true, false] {
            let name = gzip ? "source-gzip" : "source-tar"
            let source = try Self.buildImage(at: "\(work)/\(name)", files: files, gzip: gzip, entrypoint: ["/bin/true"])
            let blobs = source.layers.map { "\(work)/\(name)/blobs/sha256/\($0.digest.hex)" }
            let layerBytes = source.layers.reduce(UInt64(0)) { $0 + $1.size }
            let bytes = layerBytes + (try launcher.files.reduce(UInt64(0)) { $0 + (try Self.size(of: $1.hostPath)) })
            let sha256sum = try best { try Bench.time(["/usr/bin/sha256sum"] + blobs + launcher.files.map(\.hostPath), environment: [:]) }
            let convert = try best {
                let output = work + "/converted"
                try? FileManager.default.removeItem(atPath: output)
                let start = ContinuousClock.now
                _ = try ImageConverter(options: .init(service: "bench", launcher: launcher))
                    .convert(SourceImage.open(.ociLayout(directory: "\(work)/\(name)", tag: "bench")), to: LayoutWriter(directory: output), tag: "bench")
                return Bench.seconds(ContinuousClock.now - start)
            }
            let megabytesRead = Double(bytes) / 1e6
            print("")
            print(String(format: "convert, %@ layers: %.0f MB read (layers %.0f MB + launcher files), best of %d:", gzip ? "gzip" : "uncompressed",
                         megabytesRead, Double(layerBytes) / 1e6, repetitions))
            print(String(format: "  sha256sum (peer)        %8.0f MB/s", megabytesRead / sha256sum))
            print(String(format: "  veil image convert      %8.0f MB/s   %.2fx sha256sum (goal >= 0.7x: %@)", megabytesRead / convert,
                         sha256sum / convert, sha256sum / convert >= 0.7 ? "met" : "NOT met"))
            results.add(
                String(format: "`veil image convert`, %@ layers, %.0f MB read", gzip ? "gzip" : "uncompressed", megabytesRead), megabytesRead / convert, "MB/s",
                better: .higher, peer: "`sha256sum` of the same files", megabytesRead / sha256sum, goal: "≥ 0.7×", met: sha256sum / convert >= 0.7)
        }

        // 2. Container start.
        try await benchStart(veil: veil, work: work, launcher: launcher, results: &results)
        try record.keep(results)
    }

    private func best(_ body: () throws -> Double) throws -> Double {
        var fastest = Double.infinity
        for _ in 0..<repetitions { fastest = min(fastest, try body()) }
        return fastest
    }

    private func benchStart(veil: String, work: String, launcher: LauncherFiles, results: inout BenchRecord) async throws {
        _ = try Self.buildImage(at: work + "/start", files: try Self.trueFiles(), gzip: false, entrypoint: ["/bin/true"])
        let result = try ImageConverter(options: .init(service: "true", launcher: launcher))
            .convert(SourceImage.open(.ociLayout(directory: work + "/start", tag: "bench")), to: LayoutWriter(directory: work + "/start"), tag: "veil")
        let coordinator = try await BenchCoordinator.start(veil: veil, work: work + "/coordinator")
        defer { coordinator.stop() }
        try await coordinator.setManifest("""
            {"Packages": {"true": {"Kind": "simulated", "Measurement": "\(Hex.encode(result.measurement))"}},
             "Services": {"true": {"Package": "true"}}, "Config": {"AllowSimulation": true}}
            """)
        let state = work + "/state"
        // Peer: runc run of the original image's bundle (unpacked once, like veil run's cache).
        let original = try SourceImage.open(.ociLayout(directory: work + "/start", tag: "bench"))
        let rootfs = try BundleCache(directory: state).rootfs(for: original).path
        let bundle = work + "/bundle"
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        let spec = try RunPlan.spec(for: original, rootfs: rootfs, connection: nil)
        try Data(spec.runtimeConfig(hostname: "bench")).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        let runc = ["/usr/sbin/runc", "/usr/bin/runc"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/runc"
        let veilRun = [veil, "run", "oci:\(work)/start:veil", "--tee", "simulated", "--simulation-key", coordinator.keyPath,
                       "--coordinator", coordinator.mesh, "--root-ca", coordinator.rootPath, "--state-dir", state]
        _ = try Bench.time(veilRun, environment: ProcessInfo.processInfo.environment)  // unpack once
        var runcTimes: [Double] = [], veilTimes: [Double] = []
        for index in 0..<starts {
            runcTimes.append(try Bench.time([runc, "run", "--bundle", bundle, "bench-\(getpid())-\(index)"], environment: ProcessInfo.processInfo.environment))
            veilTimes.append(try Bench.time(veilRun, environment: ProcessInfo.processInfo.environment))
        }
        let runcMedian = Bench.median(runcTimes), veilMedian = Bench.median(veilTimes)
        print("")
        print("container start, /bin/true image (median of \(starts); simulated TEE, no confidentiality):")
        print(String(format: "  runc run, original (peer)        %8.1f ms", runcMedian * 1000))
        print(String(format: "  veil run, converted              %8.1f ms   %.1fx runc run", veilMedian * 1000, veilMedian / runcMedian))
        let hashed = try Self.trueFiles().reduce(UInt64(0)) { $0 + (try Self.size(of: $1.0)) }
        let ownCode = try launcher.files.reduce(UInt64(0)) { $0 + (try Self.size(of: $1.hostPath)) }
        print(String(format: "  measured at each start: %.1f MB hashed; %.1f MB of the launcher's own code taken from the measured record",
                     Double(hashed) / 1e6, Double(ownCode) / 1e6))
        results.add(
            "start of a `/bin/true` image: `veil run` (converted)", veilMedian * 1000, "ms", better: .lower, peer: "`runc run` (original)", runcMedian * 1000,
            goal: "≤ 2×", met: veilMedian <= 2 * runcMedian)
    }

    static func size(of path: String) throws -> UInt64 {
        UInt64(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0)
    }

    /// `/bin/true` and the libraries as ldd names them (the loader at its ABI path), as (host
    /// path, image path).
    static func trueFiles() throws -> [(String, String)] {
        let ldd = Process()
        let pipe = Pipe()
        ldd.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        ldd.arguments = ["/bin/true"]
        ldd.standardOutput = pipe
        try ldd.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ldd.waitUntilExit()
        let libraries = listing.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init).filter { $0.hasPrefix("/") }
        return (["/bin/true"] + libraries).map { ($0, String($0.dropFirst())) }
    }

    /// Regular files of the payload directory, up to the size limit, as (host path, image path).
    static func payloadFiles(_ payload: String, megabytes: Int) throws -> [(String, String)] {
        var files: [(String, String)] = []
        var total = 0
        let base = URL(fileURLWithPath: payload).resolvingSymlinksInPath().path
        guard let walker = FileManager.default.enumerator(atPath: base) else { throw CommandError("cannot read \(payload)") }
        while let relative = walker.nextObject() as? String, total < megabytes << 20 {
            let path = base + "/" + relative
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(path, R_OK) == 0 else { continue }
            files.append((path, "payload/" + relative))
            total += Int(info.st_size)
        }
        return files.sorted { $0.1 < $1.1 }
    }

    /// Writes a two-layer image of `files` (host path, image path) into an OCI layout.
    static func buildImage(at directory: String, files: [(String, String)], gzip: Bool, entrypoint: [String]) throws -> (layers: [Descriptor], Void) {
        let writer = try LayoutWriter(directory: directory)
        var layers: [Descriptor] = []
        var diffIDs: [String] = []
        let halves = [Array(files.prefix(files.count / 2)), Array(files.dropFirst(files.count / 2))]
        for half in halves where !half.isEmpty {
            let blob = try writer.blob()
            var diff = SHA256()
            let compressor = gzip ? try GzipWriter(level: 6) { try blob.write($0) } : nil
            let tar = TarWriter { bytes in
                diff.update(bufferPointer: bytes)
                if let compressor { try compressor.write(bytes) } else { try blob.write(bytes) }
            }
            var directories: Set<String> = []
            for (host, imagePath) in half {
                var prefix = ""
                for component in imagePath.split(separator: "/").dropLast() {
                    prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
                    if directories.insert(prefix).inserted { try tar.writeHeader(TarEntry(path: prefix, kind: .directory, mode: 0o755)) }
                }
                let contents = Array(try Data(contentsOf: URL(fileURLWithPath: host)))
                try tar.writeFile(TarEntry(path: imagePath, kind: .file, mode: 0o755), contents: contents)
            }
            try tar.finish()
            try compressor?.finish()
            diffIDs.append("sha256:" + Hex.encode(Array(diff.finalize())))
            layers.append(try blob.commit(mediaType: gzip ? MediaType.layerGzip : MediaType.layer))
        }
        let config: [String: Any] = [
            "architecture": "amd64", "os": "linux", "config": ["Entrypoint": entrypoint, "Env": ["PATH=/bin:/usr/bin"]],
            "rootfs": ["type": "layers", "diff_ids": diffIDs],
        ]
        let configDescriptor = try writer.put(Array(try JSONSerialization.data(withJSONObject: config, options: .sortedKeys)), mediaType: MediaType.config)
        let manifest: [String: Any] = [
            "schemaVersion": 2, "mediaType": MediaType.manifest,
            "config": ["mediaType": MediaType.config, "digest": configDescriptor.digest.description, "size": configDescriptor.size],
            "layers": layers.map { ["mediaType": $0.mediaType, "digest": $0.digest.description, "size": $0.size] },
        ]
        try writer.tag(try writer.put(Array(try JSONSerialization.data(withJSONObject: manifest, options: .sortedKeys)), mediaType: MediaType.manifest), as: "bench")
        return (layers, ())
    }
}

import ArgumentParser
import Crypto
import Foundation
import VeilCore
import VeilImage
import VeilJOSE

/// Encrypted images against the same images unencrypted, in one run: conversion with layer
/// encryption, and container start under `veil run` (attestation to the key broker, key release,
/// decryption and unpacking into a ramfs at every start, against a start from the unpacked
/// root `veil run` caches for plain images).
struct BenchEncryptedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encrypted", abstract: "Encrypted images: convert --encrypt-layers-to and veil run start, each vs the same image unencrypted.",
        discussion: "Needs runc and root; starts its own simulated coordinator (development only: no confidentiality).")

    @Option(help: ArgumentHelp("Directory whose files fill the conversion image.", valueName: "dir"))
    var payload = "/usr/lib/x86_64-linux-gnu"
    @Option(help: "Payload size limit in MiB.") var megabytes = 64
    @Option(help: "Repetitions for conversion (best is reported).") var repetitions = 3
    @Option(help: "Container starts to time (median reported).") var starts = 10
    @OptionGroup var record: RecordOption

    func run() async throws {
        let (veil, work) = try Bench.setUp("encrypted")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let launcher = try LauncherFiles.resolve(executable: try LauncherFiles.besideThisExecutable())
        let key = P256.KeyAgreement.PrivateKey()
        let recipient = JWEPublicKey.ecdhESA256KW(key.publicKey)
        print("veil-bench encrypted: \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var results = BenchRecord(benchmark: "encrypted")

        _ = try BenchImageCommand.buildImage(at: work + "/payload", files: try BenchImageCommand.payloadFiles(payload, megabytes: megabytes), gzip: true, entrypoint: ["/bin/true"])
        func convert(encrypted: Bool) throws -> Double {
            let output = work + "/converted"
            try? FileManager.default.removeItem(atPath: output)
            let start = ContinuousClock.now
            _ = try ImageConverter(options: .init(service: "bench", launcher: launcher))
                .convert(SourceImage.open(.ociLayout(directory: work + "/payload", tag: "bench")), to: LayoutWriter(directory: output), tag: "bench")
            if encrypted { _ = try LayerEncryption.encryptLayers(in: output, tag: "bench", to: [recipient]) }
            return Bench.seconds(ContinuousClock.now - start)
        }
        var plain = Double.infinity, sealed = Double.infinity
        for _ in 0..<repetitions {
            plain = min(plain, try convert(encrypted: false))
            sealed = min(sealed, try convert(encrypted: true))
        }
        print("")
        print("convert, \(megabytes) MiB gzip payload + launcher, best of \(repetitions):")
        print(String(format: "  veil image convert (peer)                    %8.2f s", plain))
        print(String(format: "  veil image convert --encrypt-layers-to       %8.2f s   %.2fx the time", sealed, sealed / plain))
        results.add("`veil image convert --encrypt-layers-to` (P-256), \(megabytes) MiB gzip payload", sealed, "s", better: .lower,
                    peer: "`veil image convert` of the same image", plain)

        try await benchStart(veil: veil, work: work, launcher: launcher, key: key, results: &results)
        try record.keep(results)
    }

    private func benchStart(veil: String, work: String, launcher: LauncherFiles, key: P256.KeyAgreement.PrivateKey, results: inout BenchRecord) async throws {
        let files = try BenchImageCommand.trueFiles()
        var measurement: [UInt8] = []
        for layout in ["plain", "sealed"] {
            _ = try BenchImageCommand.buildImage(at: "\(work)/\(layout)", files: files, gzip: true, entrypoint: ["/bin/true"])
            measurement = try ImageConverter(options: .init(service: "true", launcher: launcher))
                .convert(SourceImage.open(.ociLayout(directory: "\(work)/\(layout)", tag: "bench")), to: LayoutWriter(directory: "\(work)/\(layout)"), tag: "veil")
                .measurement
        }
        _ = try LayerEncryption.encryptLayers(in: work + "/sealed", tag: "veil", to: [.ecdhESA256KW(key.publicKey)])
        let coordinator = try await BenchCoordinator.start(veil: veil, work: work + "/coordinator")
        defer { coordinator.stop() }
        try await coordinator.setManifest("""
            {"Packages": {"true": {"Kind": "simulated", "Measurement": "\(Hex.encode(measurement))"}},
             "Services": {"true": {"Package": "true", "KBS": {"Resources": {"bench/image-key/true": "{{ raw .Secrets.imagekey }}"}}}},
             "Secrets": {"imagekey": {"Type": "plain", "UserDefined": true}}, "Config": {"AllowSimulation": true}}
            """, secrets: ["imagekey": Array(key.pemRepresentation.utf8)])
        func veilRun(_ layout: String) -> [String] {
            [veil, "run", "oci:\(work)/\(layout):veil", "--tee", "simulated", "--simulation-key", coordinator.keyPath, "--coordinator", coordinator.mesh,
             "--root-ca", coordinator.rootPath, "--state-dir", work + "/state"] + (layout == "sealed" ? ["--decryption-key", "kbs:///bench/image-key/true"] : [])
        }
        let environment = ProcessInfo.processInfo.environment
        _ = try Bench.time(veilRun("plain"), environment: environment)  // unpack once into the cache
        _ = try Bench.time(veilRun("sealed"), environment: environment)
        var plainTimes: [Double] = [], sealedTimes: [Double] = []
        for _ in 0..<starts {
            plainTimes.append(try Bench.time(veilRun("plain"), environment: environment))
            sealedTimes.append(try Bench.time(veilRun("sealed"), environment: environment))
        }
        let plain = Bench.median(plainTimes), sealed = Bench.median(sealedTimes)
        print("")
        print("container start, /bin/true image (median of \(starts); simulated TEE, no confidentiality):")
        print(String(format: "  veil run, unencrypted (peer; cached root)    %8.1f ms", plain * 1000))
        print(String(format: "  veil run, layers encrypted (key broker,      %8.1f ms   %.2fx", sealed * 1000, sealed / plain))
        print("    decryption, unpacking into a ramfs each start)")
        results.add("start of a `/bin/true` image: `veil run`, layers encrypted", sealed * 1000, "ms", better: .lower,
                    peer: "`veil run` of the same image unencrypted", plain * 1000)
    }
}

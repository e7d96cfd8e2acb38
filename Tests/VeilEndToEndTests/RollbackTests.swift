import Foundation
import Testing

/// Rollback of the embedded file store, tried on the real coordinator: an old state file put
/// back, the state deleted, and a whole data directory put back.
@Suite(.timeLimit(.minutes(5))) struct RollbackTests {
    func copy(_ from: String, to: String) throws {
        try? FileManager.default.removeItem(atPath: to)
        try FileManager.default.copyItem(atPath: from, toPath: to)
    }

    @Test func anOldStateFileOrADeletedOneIsRefusedUntilReset() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let state = coordinator.dataDirectory + "/state.sealed"
        try copy(state, to: scratch.path + "/old-state")
        #expect(try await coordinator.setManifest(#"{"Packages": {}, "Services": {}, "Secrets": {"s": {"Type": "plain", "Size": 8}}}"#).status == 0)
        await coordinator.process?.stop()

        try copy(scratch.path + "/old-state", to: state)
        let rolledBack = try await run(veilBinary, ["coordinator", "--tee", "simulated", "--data-dir", coordinator.dataDirectory,
                                              "--client-addr", "127.0.0.1:\(freePort())", "--mesh-addr", "127.0.0.1:\(freePort())"], scratch: scratch, timeout: 30)
        #expect(rolledBack.status != 0 && rolledBack.stderr.contains("state rollback refused"), "\(rolledBack.stderr.suffix(800))")

        try FileManager.default.removeItem(atPath: state)
        let deleted = try await run(veilBinary, ["coordinator", "--tee", "simulated", "--data-dir", coordinator.dataDirectory,
                                           "--client-addr", "127.0.0.1:\(freePort())", "--mesh-addr", "127.0.0.1:\(freePort())"], scratch: scratch, timeout: 30)
        #expect(deleted.status != 0 && deleted.stderr.contains("--reset"), "\(deleted.stderr.suffix(800))")

        // Knowingly: --reset starts a new coordinator (new root).
        let oldRoot = try String(contentsOfFile: coordinator.rootPath, encoding: .utf8)
        coordinator.extraArguments = ["--reset"]
        try await coordinator.start()
        #expect(try String(contentsOfFile: coordinator.rootPath, encoding: .utf8) != oldRoot)
    }

    /// The whole data directory (state, sealed key, seen generation) put back opens — only
    /// clients can tell: `veil attest` remembers the longest history it verified per root.
    @Test func aWholeDataDirectoryPutBackIsRefusedByClients() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let alice = try await UserCLITests().makeUser("alice", in: scratch)
        let manifest: [String: Any] = [
            "Packages": ["p": ["Kind": "simulated", "SignerID": String(repeating: "ab", count: 32), "ProductID": 1, "SecurityVersion": 1]],
            "Services": ["s": ["Package": "p"]],
            "Users": ["alice": ["Certificate": try String(contentsOfFile: alice.cert, encoding: .utf8), "Roles": ["pkg"]]],
            "Roles": ["pkg": ["ResourceType": "Packages", "ResourceNames": ["p"], "Actions": ["UpdatePackage"]]],
            "Config": ["AllowSimulation": true],
        ]
        #expect(try await coordinator.setManifest(String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self)).status == 0)
        await coordinator.process?.stop()
        try copy(coordinator.dataDirectory, to: scratch.path + "/old-data")
        try await coordinator.start()  // attests a 1-entry history

        let bump = try scratch.write(#"{"Packages": {"p": {"SecurityVersion": 2}}}"#, to: "bump.json")
        #expect(try await coordinator.veil(["manifest", "update", bump], environment: ["VEIL_USER_CERT": alice.cert, "VEIL_USER_KEY": alice.key]).status == 0)
        let newer = try await coordinator.veil(["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey])
        #expect(newer.status == 0 && newer.stdout.contains("2 entries verified"), "\(newer.stdout)\(newer.stderr)")
        await coordinator.process?.stop()

        // Everything put back: it opens (its own seen-generation mark went back with it) …
        try copy(scratch.path + "/old-data", to: coordinator.dataDirectory)
        try await coordinator.start(attest: false)
        // … but the client that saw the newer history refuses it.
        let attest = try await coordinator.veil(["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey])
        #expect(attest.status != 0 && attest.stderr.contains("history rolled back: it showed 2 entries before and now 1"), "\(attest.stderr)")
    }
}

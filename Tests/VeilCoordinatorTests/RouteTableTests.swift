import Foundation
import Logging
import Testing
import VeilAttestation
@testable import VeilCoordinator

/// docs/openapi.yaml documents exactly the routes the listeners serve, so the end-to-end
/// checks generated from the document (schemathesis, the body limit on every endpoint) reach
/// every route.
@Suite struct RouteTableTests {
    static let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/openapi.yaml").path

    /// `METHOD /path` of every operation in the document.
    static func documentedOperations() throws -> Set<String> {
        var operations = Set<String>()
        var path: String?
        for line in try String(contentsOfFile: document, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if !line.hasPrefix(" "), !line.isEmpty {
                path = nil
            } else if let current = path, let method = ["get", "post", "put", "delete", "patch"].first(where: { line == "    \($0):" }) {
                operations.insert("\(method.uppercased()) \(current)")
            }
        }
        return operations
    }

    @Test func everyServedRouteIsDocumentedAndEveryDocumentedOneServed() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let metrics = PrometheusExposition()
        let client = RouteTable(), mesh = RouteTable(), recovery = RouteTable()
        _ = HTTPAPI.clientRouter(coordinator, metrics: metrics, noting: client)
        let peers = PeerKeyService(
            coordinator: coordinator,
            policy: ReplicaPolicy(ownMeasurement: fixture.measurement, verification: .init(allowSimulation: true, simulationKey: fixture.platformKey.publicKey)))
        _ = HTTPAPI.meshRouter(coordinator, peers: peers, noting: mesh)
        let recovering = try RecoveryCoordinator(
            store: FileStateStore(directory: fixture.directory), vault: StateVault(directory: fixture.directory, sealingKey: nil), data: nil,
            reason: "test", evidenceProvider: SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement),
            logger: Logger(label: "test"))
        _ = HTTPAPI.recoveryRouter(recovering, metrics: metrics, noting: recovery, onRecovered: {})

        let served = Set(client.operations + mesh.operations + recovery.operations)
        let documented = try Self.documentedOperations()
        #expect(served.count >= 20, "\(served.sorted())")
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
        #expect(mesh.operations.contains("POST /api/v1/peer/state-key"))
        #expect(client.operations.contains("PUT /api/v1/secrets/{name}"))
    }
}

import Crypto
import Foundation
import Testing
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilManifest
import SwiftASN1
import X509

/// The `pkcs12` template filter, checked by the two programs that read such files most:
/// OpenSSL and Java's keytool (Java 17, the runtime the Spark example uses).
@Suite struct KeyStoreTests {
    static func manifest(_ fixture: Fixture) -> [UInt8] {
        Array("""
            {
              "Packages": { "app": { "Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))" } },
              "Services": { "cache": { "Package": "app", "Parameters": {
                  "Files": { "/tls/service.p12": "{{ pkcs12 .Veil.Service.Private .Secrets.storepass }}",
                             "/tls/trust.p12": "{{ pkcs12 .Veil.RootCA.Cert .Secrets.storepass }}",
                             "/tls/secret.p12": "{{ pkcs12 .Secrets.tlsCert.Private .Secrets.storepass }}" },
                  "Env": { "STOREPASS": "{{ hex .Secrets.storepass }}" } } } },
              "Secrets": { "storepass": { "Type": "plain", "Size": 16 },
                           "tlsCert": { "Type": "cert-rsa", "Size": 2048, "Cert": { "Subject": { "CommonName": "cache" } } } },
              "Config": { "AllowSimulation": true }
            }
            """.utf8)
    }

    /// Activates and writes the three rendered stores; returns their directory, the password
    /// as the program sees it, the activation key and certificate chain.
    static func activate() async throws -> (directory: String, password: String, key: P256.Signing.PrivateKey, chain: [Certificate]) {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture))
        let (request, key) = try fixture.request(coordinator)
        let response = try await coordinator.activate(request)
        for (path, value) in response.files {
            let bytes = try value.assemble(servicePrivateKeyDER: Array(key.derRepresentation))
            try Data(bytes).write(to: URL(fileURLWithPath: fixture.directory + path.replacingOccurrences(of: "/tls/", with: "/")))
        }
        let password = String(decoding: try #require(response.env["STOREPASS"]).assemble(servicePrivateKeyDER: []), as: UTF8.self)
        let chain = try PEMDocument.parseMultiple(pemString: response.certificateChain).map { try Certificate(derEncoded: $0.derBytes) }
        return (fixture.directory, password, key, chain)
    }

    @Test func opensslReadsTheServiceKeyStoreWithTheActivationKeyAndChain() async throws {
        let (directory, password, key, chain) = try await Self.activate()
        let store = "\(directory)/service.p12"
        // The key inside is the activation's own key (compared through its public half).
        let publicKey = try output("openssl pkcs12 -in \(store) -passin pass:\(password) -nocerts -nodes | openssl pkey -pubout")
        #expect(try P256.Signing.PublicKey(pemRepresentation: publicKey).rawRepresentation == key.publicKey.rawRepresentation)
        // The chain is the activation's: leaf first, then the intermediate.
        let certificates = try PEMDocument.parseMultiple(pemString: try output("openssl pkcs12 -in \(store) -passin pass:\(password) -nokeys"))
        #expect(try certificates.map { try Certificate(derEncoded: $0.derBytes) } == chain)
        // The MAC and the PBES2 encryption are checked with the right password only.
        // (The password is hex: its last digit changed, never to itself — "0" for "0" was right 1 in 16 runs.)
        let wrong = try run("openssl pkcs12 -in \(store) -passin pass:\(password.dropLast())\(password.last == "0" ? "1" : "0") -nodes")
        #expect(wrong.status != 0)
        #expect(wrong.output.lowercased().contains("mac verify"))
    }

    @Test func javaReadsAKeyEntryATrustedCertificateAndACertificateSecret() async throws {
        let (directory, password, _, chain) = try await Self.activate()
        let service = try output("keytool -list -v -storetype PKCS12 -keystore \(directory)/service.p12 -storepass \(password)")
        #expect(service.contains("Alias name: veil-service"))
        #expect(service.contains("Entry type: PrivateKeyEntry"))
        #expect(service.contains("Certificate chain length: 2"))
        // The entry's certificate is the activation's (by its SHA-256 fingerprint).
        let fingerprint = SHA256.hash(data: try chain[0].serializeAsPEM().derBytes).map { String(format: "%02X", $0) }.joined(separator: ":")
        #expect(service.contains("SHA256: \(fingerprint)"), "\(service)")

        let trust = try output("keytool -list -v -storetype PKCS12 -keystore \(directory)/trust.p12 -storepass \(password)")
        #expect(trust.contains("Entry type: trustedCertEntry"))
        #expect(trust.contains("Owner: CN=Veil Coordinator Root CA") || trust.contains("Root CA"))

        let secret = try output("keytool -list -v -storetype PKCS12 -keystore \(directory)/secret.p12 -storepass \(password)")
        #expect(secret.contains("Alias name: tlscert"))
        #expect(secret.contains("Entry type: PrivateKeyEntry"))
        #expect(secret.contains("Owner: CN=cache"))
        #expect(secret.contains("Key Algorithm: RSA") || secret.contains("2048-bit RSA key"))

        let wrong = try run("keytool -list -storetype PKCS12 -keystore \(directory)/service.p12 -storepass not-\(password)")
        #expect(wrong.status != 0)
        #expect(wrong.output.contains("Integrity check failed"))
    }

    @Test func theStoresAreFreshlySaltedEachTime() throws {
        let key = P256.Signing.PrivateKey()
        let one = try PKCS12.keyStore(privateKeyDER: Array(key.derRepresentation), chain: [[0x30, 0x00]], password: Array("pw".utf8), alias: "a")
        let two = try PKCS12.keyStore(privateKeyDER: Array(key.derRepresentation), chain: [[0x30, 0x00]], password: Array("pw".utf8), alias: "a")
        #expect(one != two)
        #expect(one.count == two.count)
    }

    private func run(_ script: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "set -o pipefail; " + script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private func output(_ script: String) throws -> String {
        let result = try run(script)
        try #require(result.status == 0, "\(script) failed: \(result.output)")
        return result.output
    }
}

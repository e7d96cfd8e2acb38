import FoundationEssentials
import VeilAttestation
import VeilClient
import VeilCore
import VeilImage
import VeilImageFormat
import VeilJOSE

/// The keys of an image's encrypted layers, released by the coordinator's key broker only
/// after this machine attests as the image's service.
///
/// The evidence claims the measurement the image's config names (`dev.veil.measurement`,
/// the plaintext root filesystem's): the coordinator releases the keys only when that is the
/// measurement its manifest gives the service holding them. In a confidential VM the
/// measurement rides in the additional evidence the report data's hash covers. What the
/// layers decrypt to is then checked against the config's diff_ids, and the launcher measures
/// the unpacked root before its activation: a config that claims a measurement its layers do
/// not have starts nothing.
public enum ImageKeyRelease {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case noMeasurement
        case needsTEE
        case needsRootCA
        case noKeyNamed
        case badResource(String)
        case badKey(resource: String, reason: String)

        public var description: String {
            switch self {
            case .noMeasurement:
                return "the image's layers are encrypted but its config names no measurement (dev.veil.measurement): only images `veil image convert` made can be run encrypted"
            case .needsTEE:
                return "the image's layers are encrypted: their keys are released only after attestation, so pass --tee snp|tdx (in such a guest) or --tee simulated (development only)"
            case .needsRootCA:
                return "the image's layers are encrypted: pass --root-ca (or VEIL_ROOT_CA), the coordinator root its key broker is trusted under"
            case .noKeyNamed:
                return "the image's layer keys are wrapped for a private key (JWE): name the key-broker resource holding it with --decryption-key kbs:///REPOSITORY/TYPE/TAG"
            case .badResource(let text): return "'\(text)' is not kbs:///REPOSITORY/TYPE/TAG"
            case .badKey(let resource, let reason): return "the key released as \(resource) cannot be used: \(reason)"
            }
        }
    }

    /// The KBS resource path of `kbs:///REPOSITORY/TYPE/TAG`.
    public static func resourcePath(_ uri: String) throws(Failure) -> String {
        guard let path = CoCoKeyPacket.resourcePath(of: uri) else { throw .badResource(uri) }
        return path
    }

    /// Attests as `image`'s service over `connection` and fetches the private keys named by
    /// `decryptionKeys` (`kbs:///…`, PEM) and the key-encryption keys its CoCo packets name.
    public static func keyring(for image: SourceImage, decryptionKeys: [String], connection: LauncherConnection) async throws -> LayerKeyring {
        let encrypted = image.layers.filter(\.isEncrypted)
        let packetResources = try LayerKeyring.packetResources(of: encrypted)
        let privateKeyResources = try decryptionKeys.map { (uri) throws(Failure) in try resourcePath(uri) }
        let needsPrivateKey = encrypted.contains { ($0.annotations ?? [:])[CoCoKeyPacket.annotation] == nil }
        if needsPrivateKey && privateKeyResources.isEmpty { throw Failure.noKeyNamed }
        guard let measurement = image.config.labels[ImageConverter.measurementLabel].flatMap(Hex.decode), measurement.count == 32 else {
            throw Failure.noMeasurement
        }
        guard let rootPath = connection.rootCA else { throw Failure.needsRootCA }
        let rootPEM = try String(contentsOfFile: rootPath, encoding: .utf8)
        let (provider, binding) = try evidenceSource(connection.tee, measurement: measurement)
        return try await CoordinatorClient.with(address: connection.coordinator, trust: .pinnedRoot(rootPEM)) { client in
            let broker = try await KeyBrokerClient.attest(client, provider: provider, additionalEvidence: binding)
            var keyring = LayerKeyring()
            for path in privateKeyResources {
                let released = try await broker.resource(path)
                do {
                    keyring.privateKeys.append(try JWEPrivateKey(pem: String(decoding: released, as: UTF8.self)))
                } catch {
                    throw Failure.badKey(resource: path, reason: "not a PEM private key (RSA, P-256, P-384 or P-521): \(error)")
                }
            }
            for path in packetResources {
                let released = try await broker.resource(path)
                guard released.count == 32 else { throw Failure.badKey(resource: path, reason: "a key-encryption key is 32 bytes, not \(released.count)") }
                keyring.keyEncryptionKeys[path] = released
            }
            return keyring
        }
    }

    /// The evidence provider for `tee` and the additional evidence that binds the image.
    static func evidenceSource(_ tee: ContainerTEE, measurement: [UInt8]) throws -> (any EvidenceProvider, String) {
        switch tee {
        case .simulated(let keyPath):
            // Simulated evidence carries the image measurement itself, as the launcher's does.
            return (SimulatedEvidenceProvider(key: try SimulationPlatformKey.load(at: keyPath), measurement: measurement), "")
        case .confidentialVM(let guest):
            let provider = ConfigfsTSMProvider(root: guest.tsmRoot, expectedProvider: guest.kind == .snp ? "sev_guest" : "tdx_guest")
            return (provider, KeyBrokerClient.imageBinding(measurement))
        }
    }
}

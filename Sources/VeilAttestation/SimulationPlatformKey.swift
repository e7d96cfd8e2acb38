import Crypto
import FoundationEssentials
import VeilCore

/// The per-installation key that signs simulated evidence.
///
/// It stands in for the hardware's attestation key. Whoever can read the private key file can
/// forge simulated evidence, which is why simulation never gives confidentiality.
public struct SimulationPlatformKey: Sendable {
    public let privateKey: P256.Signing.PrivateKey
    public var publicKey: P256.Signing.PublicKey { privateKey.publicKey }
    /// `SHA-256` of the public key's SubjectPublicKeyInfo DER, in hex: how errors and logs name the key.
    public var fingerprint: String { Self.fingerprint(of: publicKey) }

    /// The environment variable naming the key file when no flag does.
    public static let environmentVariable = VeilEnvironment.simulationKey
    /// The key file's name inside a coordinator data directory.
    public static let defaultFileName = "simulation-platform-key.pem"

    public init(privateKey: P256.Signing.PrivateKey) {
        self.privateKey = privateKey
    }

    public static func fingerprint(of key: P256.Signing.PublicKey) -> String {
        Hex.encode(SHA256.hash(data: key.derRepresentation))
    }

    /// Loads the key at `path`; creates it (mode 0600, via a temporary file and rename) when absent.
    public static func loadOrCreate(at path: String) throws -> SimulationPlatformKey {
        if FileManager.default.fileExists(atPath: path) {
            return try load(at: path)
        }
        let key = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
        do {
            try AtomicFile.write(Array(key.privateKey.pemRepresentation.utf8), to: path, mode: 0o600)
        } catch {
            throw AttestationError.platformKeyUnavailable(path: path, reason: "cannot create: \(error)")
        }
        return key
    }

    public static func load(at path: String) throws -> SimulationPlatformKey {
        let text: String
        switch AtomicFile.read(path) {
        case .success(let bytes): text = String(decoding: bytes, as: UTF8.self)
        case .failure(let error): throw AttestationError.platformKeyUnavailable(path: path, reason: "cannot read (\(error.reason))")
        }
        do {
            return SimulationPlatformKey(privateKey: try P256.Signing.PrivateKey(pemRepresentation: text))
        } catch {
            throw AttestationError.platformKeyUnavailable(path: path, reason: "not a PEM P-256 private key")
        }
    }

    /// Loads a trusted public key for verification: accepts a private key PEM (the platform key
    /// file itself) or a public key PEM.
    public static func loadPublicKey(at path: String) throws -> P256.Signing.PublicKey {
        let text: String
        switch AtomicFile.read(path) {
        case .success(let bytes): text = String(decoding: bytes, as: UTF8.self)
        case .failure(let error): throw AttestationError.platformKeyUnavailable(path: path, reason: "cannot read (\(error.reason))")
        }
        if let key = try? P256.Signing.PublicKey(pemRepresentation: text) { return key }
        if let key = try? P256.Signing.PrivateKey(pemRepresentation: text) { return key.publicKey }
        throw AttestationError.platformKeyUnavailable(path: path, reason: "not a PEM P-256 public or private key")
    }
}

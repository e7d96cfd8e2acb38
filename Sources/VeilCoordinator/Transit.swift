import Crypto
import FoundationEssentials
import VeilCore
import VeilManifest
import X509

/// The subset of Vault's transit engine that OpenBao's `seal "transit"` (and other Vault
/// clients) need: encrypt, decrypt, data keys, key versions and rotation.
///
/// Ciphertexts are `vault:vN:` + base64(nonce ‖ AES-256-GCM ciphertext ‖ tag), N the key version,
/// as Vault writes them; the associated data binds the key's name, so a ciphertext of one key
/// never opens under another even if a key were reused. Keys live in the sealed coordinator
/// state, are made at first use and only grow in versions; old versions still decrypt.
enum Transit {
    static func associatedData(_ name: String) -> [UInt8] { Array("veil-transit\0\(name)".utf8) }

    static func seal(_ plaintext: [UInt8], key: [UInt8], version: Int, name: String) throws -> String {
        let box = try AES.GCM.seal(plaintext, using: SymmetricKey(data: key), authenticating: associatedData(name))
        guard let combined = box.combined else { throw CoordinatorError.storage("AES-GCM gave no combined ciphertext") }
        return "vault:v\(version):" + Data(combined).base64EncodedString()
    }

    static func open(_ ciphertext: String, versions: [[UInt8]], name: String) throws(CoordinatorError) -> [UInt8] {
        let parts = ciphertext.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "vault", parts[1].hasPrefix("v"), let version = Int(parts[1].dropFirst()), version >= 1,
            let combined = Data(base64Encoded: String(parts[2]))
        else { throw .badRequest("ciphertext is not vault:vN:BASE64") }
        guard version <= versions.count else { throw .transitRefused(key: name, reason: "no version \(version) (latest \(versions.count))") }
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            return Array(try AES.GCM.open(box, using: SymmetricKey(data: versions[version - 1]), authenticating: associatedData(name)))
        } catch {
            throw .transitRefused(key: name, reason: "the ciphertext does not open under version \(version) (changed, or made for another key)")
        }
    }

    static func newKey() -> [UInt8] { SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) } }
}

extension Coordinator {
    /// The service a client certificate was issued to at activation: signed by the workload
    /// intermediate, valid now, naming a service in the current trust domain (`spiffe://TRUST-DOMAIN/service/NAME`).
    func serviceCaller(_ certificateDER: [UInt8]?, now: Date, needing what: String) throws(CoordinatorError) -> String {
        try serviceCertificate(certificateDER, now: now, needing: what).service
    }

    /// ``serviceCaller(_:now:needing:)``, with the certificate it read.
    func serviceCertificate(_ certificateDER: [UInt8]?, now: Date, needing what: String) throws(CoordinatorError) -> (service: String, certificate: Certificate) {
        guard let certificateDER else { throw .unauthenticated("\(what) needs a service's activation certificate as the TLS client certificate") }
        guard let certificate = try? Certificate(derEncoded: certificateDER),
            authority.intermediate.publicKey.isValidSignature(certificate.signature, for: certificate), certificate.issuer == authority.intermediate.subject
        else { throw .unauthenticated("the client certificate was not issued by this coordinator at an activation") }
        guard (certificate.notValidBefore...certificate.notValidAfter).contains(now) else {
            throw .unauthenticated("the client certificate is not valid now (valid \(certificate.notValidBefore) to \(certificate.notValidAfter))")
        }
        let uris = (try? certificate.extensions.subjectAlternativeNames)?.compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        } ?? []
        guard let identity = uris.compactMap(CoordinatorIdentity.service(fromURI:)).first(where: { $0.trustDomain == trustDomain }) else {
            throw .unauthenticated("the client certificate names no service in this coordinator's trust domain \(trustDomain)")
        }
        return (identity.service, certificate)
    }

    /// `service` may use transit key `name` under the current manifest.
    func authorizeTransit(_ service: String, key name: String) throws(CoordinatorError) {
        guard let manifest else { throw .noManifest }
        guard Manifest.isTransitKeyName(name) else { throw .badRequest("'\(name)' cannot name a transit key") }
        guard manifest.services[service]?.transitKeys.contains(name) == true else {
            logger.warning("transit refused", metadata: ["service": "\(service)", "key": "\(name)"])
            throw .transitRefused(key: name, reason: "service '\(service)' is not allowed to use it (the manifest lists \(manifest.transitUsers(of: name).map { "'\($0)'" }.joined(separator: ", ").nonEmpty ?? "no service"))")
        }
    }

    /// Encrypts under the latest version of key `name`, making version 1 at first use.
    public func transitEncrypt(_ plaintext: [UInt8], key name: String, certificate: [UInt8]?, now: Date = Date()) async throws(CoordinatorError) -> (ciphertext: String, version: Int) {
        let service = try serviceCaller(certificate, now: now, needing: "the transit API")
        try authorizeTransit(service, key: name)
        let versions = try await transitVersions(name, creatingFor: service)
        do {
            return (try Transit.seal(plaintext, key: versions[versions.count - 1], version: versions.count, name: name), versions.count)
        } catch {
            throw .storage("transit encryption failed: \(error)")
        }
    }

    public func transitDecrypt(_ ciphertext: String, key name: String, certificate: [UInt8]?, now: Date = Date()) throws(CoordinatorError) -> [UInt8] {
        let service = try serviceCaller(certificate, now: now, needing: "the transit API")
        try authorizeTransit(service, key: name)
        guard let versions = current.state.transitKeys?[name] else { throw .transitRefused(key: name, reason: "no such key yet (it is made at the first encryption)") }
        return try Transit.open(ciphertext, versions: versions, name: name)
    }

    /// Adds a version to key `name` (new encryptions use it; older versions still decrypt).
    public func transitRotate(key name: String, certificate: [UInt8]?, now: Date = Date()) async throws(CoordinatorError) -> Int {
        let service = try serviceCaller(certificate, now: now, needing: "the transit API")
        try authorizeTransit(service, key: name)
        return try await transact { state, _ in
            var keys = state.transitKeys ?? [:]
            keys[name, default: []].append(Transit.newKey())
            state.transitKeys = keys
            let version = keys[name]!.count
            return (version, [HistoryEvent("transitKeyRotated", detail: ["key": name, "service": service, "version": "\(version)"])])
        }
    }

    /// Key `name`'s versions, made (version 1, recorded in the history) when it has none.
    func transitVersions(_ name: String, creatingFor service: String) async throws(CoordinatorError) -> [[UInt8]] {
        if let versions = current.state.transitKeys?[name], !versions.isEmpty { return versions }
        return try await transact { state, _ in
            if let versions = state.transitKeys?[name], !versions.isEmpty { return (versions, []) }
            var keys = state.transitKeys ?? [:]
            keys[name] = [Transit.newKey()]
            state.transitKeys = keys
            return (keys[name]!, [HistoryEvent("transitKeyCreated", detail: ["key": name, "service": service])])
        }
    }
}

extension Coordinator {
    /// The services' SPIFFE trust domain: the manifest's `Config.TrustDomain`, else `COORDINATOR-ID.veil`.
    var trustDomain: String {
        manifest?.config.trustDomain ?? CoordinatorIdentity.defaultTrustDomain(coordinatorID: authority.coordinatorID)
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}

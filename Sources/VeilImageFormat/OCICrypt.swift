import Crypto
import FoundationEssentials
import VeilCore
import VeilJOSE
import _CryptoExtras

/// Layers encrypted by ocicrypt (skopeo, buildah, CoCo's tools): media type
/// `…tar+gzip+encrypted`, the layer key wrapped in annotations, the content AES-256-CTR with an
/// HMAC-SHA256 over the whole encrypted blob.
///
/// - `org.opencontainers.image.enc.keys.jwe`: standard base64 of a JWE (JSON serialization)
///   whose plaintext is the layer's *private options*
///   `{"symkey": B64(32), "digest": "sha256:…", "cipheroptions": {"nonce": B64(16)}}`;
/// - `org.opencontainers.image.enc.keys.provider.NAME`: a key provider's packet (CoCo's
///   `attestation-agent`: ``CoCoKeyPacket``) holding the same private options;
/// - `org.opencontainers.image.enc.pubopts`: standard base64 of
///   `{"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": B64(32), "cipheroptions": {}}`.
///
/// Decryption checks the HMAC over every encrypted byte before decrypting any, then the
/// plaintext's digest against the one the private options name (which the layer's writer
/// bound under the key): a changed byte, a swapped layer or a wrong key is an error, never
/// a partly decrypted layer.
public enum OCICrypt {
    public static let encryptedMediaTypeSuffix = "+encrypted"
    public static let jweAnnotation = "org.opencontainers.image.enc.keys.jwe"
    public static let providerAnnotationPrefix = "org.opencontainers.image.enc.keys.provider."
    public static let publicOptionsAnnotation = "org.opencontainers.image.enc.pubopts"
    static let cipher = "AES_256_CTR_HMAC_SHA256"

    /// What opens a layer: its content key, counter block and plaintext digest.
    public struct LayerKey: Sendable, Equatable {
        public let symmetricKey: [UInt8]
        public let nonce: [UInt8]
        /// `sha256:HEX` of the plaintext (the plain, still compressed, layer).
        public let digest: String

        /// Parses the private options JSON.
        public init(privateOptions json: [UInt8]) throws(OCICryptError) {
            guard let object = (try? JSONValue.parse(json))?.objectValue else { throw .malformed("the private options are not a JSON object") }
            guard let key = object["symkey"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map(Array.init), key.count == 32 else {
                throw .malformed("private options 'symkey' is not base64 of 32 bytes")
            }
            guard let nonce = object["cipheroptions"]?.objectValue?["nonce"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map(Array.init),
                nonce.count == 16
            else { throw .malformed("private options 'cipheroptions.nonce' is not base64 of 16 bytes") }
            guard let digest = object["digest"]?.stringValue, digest.hasPrefix("sha256:"), let hex = Hex.decode(String(digest.dropFirst(7))), hex.count == 32 else {
                throw .malformed("private options 'digest' is not sha256:HEX")
            }
            (symmetricKey, self.nonce, self.digest) = (key, nonce, digest)
        }
    }

    /// An encrypted layer as ocicrypt writes it: a fresh 256-bit key and 128-bit counter block,
    /// AES-256-CTR, the HMAC over the whole ciphertext, and the private options wrapped for every
    /// recipient (one JWE each, comma-joined as ocicrypt reads them).
    /// - Returns: the encrypted blob and the layer's annotations.
    /// - Parameter packet: also wrap the key in a CoCo key packet for the key broker's resource
    ///   `keyID` names, under its key-encryption key.
    public static func encrypt(
        layer plain: [UInt8], to recipients: [JWEPublicKey], packet: (keyID: String, kek: [UInt8])? = nil
    ) throws(OCICryptError) -> (blob: [UInt8], annotations: [String: String]) {
        guard !recipients.isEmpty || packet != nil else { throw .noKeyFor("no recipient to wrap the layer key for") }
        let key = SymmetricKey(size: .bits256)
        let nonce = Array(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let blob: [UInt8]
        do {
            blob = Array(try AES._CTR.encrypt(plain, using: key, nonce: AES._CTR.Nonce(nonceBytes: nonce)))
        } catch {
            throw .malformed("AES-CTR: \(error)")
        }
        let keyBytes = key.withUnsafeBytes { Array($0) }
        let privateOptions: [String: JSONValue] = [
            "symkey": .string(Data(keyBytes).base64EncodedString()), "digest": .string("sha256:" + Hex.encode(SHA256.hash(data: plain))),
            "cipheroptions": .object(["nonce": .string(Data(nonce).base64EncodedString())]),
        ]
        let publicOptions: [String: JSONValue] = [
            "cipher": .string(cipher), "hmac": .string(Data(HMAC<SHA256>.authenticationCode(for: blob, using: key)).base64EncodedString()),
            "cipheroptions": .object([:]),
        ]
        var wrapped: [String] = []
        do {
            let options = try CanonicalJSON.encode(JSONValue.object(privateOptions))
            for recipient in recipients {
                wrapped.append(Data(try CanonicalJSON.encode(try FlattenedJWE.encrypt(options, to: recipient))).base64EncodedString())
            }
            var annotations = [publicOptionsAnnotation: Data(try CanonicalJSON.encode(JSONValue.object(publicOptions))).base64EncodedString()]
            if !wrapped.isEmpty { annotations[jweAnnotation] = wrapped.joined(separator: ",") }
            if let packet { annotations[CoCoKeyPacket.annotation] = try CoCoKeyPacket.wrap(options, keyID: packet.keyID, kek: packet.kek) }
            return (blob, annotations)
        } catch {
            throw .malformed("cannot wrap the layer key: \(error)")
        }
    }

    /// The layer key from the layer's JWE annotation, with the first of `keys` that opens it.
    public static func layerKey(annotations: [String: String], keys: [JWEPrivateKey]) throws(OCICryptError) -> LayerKey {
        guard let encoded = annotations[jweAnnotation] else {
            let schemes = annotations.keys.filter { $0.hasPrefix("org.opencontainers.image.enc.keys.") }.sorted()
            throw .noKeyFor(schemes.isEmpty ? "the layer names no wrapped key" : "the layer's key is wrapped only for \(schemes.joined(separator: ", "))")
        }
        // One JWE per annotation; ocicrypt would join several with commas.
        var reasons: [String] = []
        for part in encoded.split(separator: ",") {
            guard let json = Data(base64Encoded: String(part)).map(Array.init) else { throw .malformed("\(jweAnnotation) is not standard base64") }
            do {
                return try LayerKey(privateOptions: try JWEDecryption.decrypt(json: json, with: keys))
            } catch let error as OCICryptError {
                throw error
            } catch {
                reasons.append("\(error)")
            }
        }
        throw .noKeyFor("no given key opens the layer's JWE: \(reasons.joined(separator: "; "))")
    }

    /// The plain layer: HMAC checked over the whole blob first, then AES-256-CTR, then the
    /// plaintext's digest against `key.digest`.
    /// - Parameter diffID: the digest the caller checks the layer's *uncompressed* stream
    ///   against. skopeo (containers/image) compresses an uncompressed layer while encrypting it
    ///   and names the source blob's digest in the key — the uncompressed tar's, i.e. the
    ///   diff_id. A key naming exactly `diffID` is accepted here, the caller's check binding it.
    public static func decrypt(layer blob: [UInt8], annotations: [String: String], key: LayerKey, diffID: String? = nil) throws(OCICryptError) -> [UInt8] {
        guard let encoded = annotations[publicOptionsAnnotation], let json = Data(base64Encoded: encoded).map(Array.init),
            let options = (try? JSONValue.parse(json))?.objectValue
        else { throw .malformed("\(publicOptionsAnnotation) is missing or not base64 of a JSON object") }
        guard options["cipher"]?.stringValue == cipher else { throw .unsupportedCipher(options["cipher"]?.stringValue ?? "(none)") }
        guard let expected = options["hmac"]?.stringValue.flatMap({ Data(base64Encoded: $0) }), expected.count == 32 else {
            throw .malformed("public options 'hmac' is not base64 of 32 bytes")
        }
        let symmetric = SymmetricKey(data: key.symmetricKey)
        guard HMAC<SHA256>.isValidAuthenticationCode(expected, authenticating: blob, using: symmetric) else { throw .hmacMismatch }
        let plain: [UInt8]
        do {
            plain = Array(try AES._CTR.decrypt(blob, using: symmetric, nonce: AES._CTR.Nonce(nonceBytes: key.nonce)))
        } catch {
            throw .malformed("AES-CTR: \(error)")
        }
        // A key naming the diff_id is checked by the caller over the uncompressed stream (for an
        // uncompressed layer, these very bytes): no second hash of them here.
        if let diffID, key.digest == diffID { return plain }
        let digest = "sha256:" + Hex.encode(SHA256.hash(data: plain))
        guard digest == key.digest else { throw .digestMismatch(expected: key.digest, actual: digest) }
        return plain
    }
}

/// CoCo's key-provider packet (`…enc.keys.provider.attestation-agent`, standard base64 of
/// JSON): the layer's private options wrapped with AES-256-GCM under a key-encryption key that
/// the key broker releases as the resource `kid` names (`kbs:///REPOSITORY/TYPE/TAG`). Version
/// 1 packets carry `kid`, `wrapped_data`, `iv`, `wrap_type`; version 2 adds `version`,
/// `provider`, `provider_settings`, `annotations` (ignored here).
public struct CoCoKeyPacket: Sendable, Equatable {
    public let keyID: String
    let wrapped: [UInt8]
    let iv: [UInt8]

    /// The annotation CoCo's attestation agent reads.
    public static let annotation = OCICrypt.providerAnnotationPrefix + "attestation-agent"

    /// A version 1 packet (what CoCo's `coco_keyprovider` writes and every image-rs reads):
    /// `privateOptions` under AES-256-GCM with `kek`, a fresh 96-bit IV, no AAD; standard
    /// base64 of its JSON, as the annotation holds it.
    public static func wrap(_ privateOptions: [UInt8], keyID: String, kek: [UInt8]) throws(OCICryptError) -> String {
        guard kek.count == 32 else { throw .malformed("the key-encryption key is \(kek.count) bytes, not 32") }
        do {
            let sealed = try AES.GCM.seal(privateOptions, using: SymmetricKey(data: kek))
            let packet = JSONValue.object([
                "kid": .string(keyID), "wrapped_data": .string(Data(sealed.ciphertext + sealed.tag).base64EncodedString()),
                "iv": .string(Data(sealed.nonce).base64EncodedString()), "wrap_type": .string("A256GCM"),
            ])
            return Data(try CanonicalJSON.encode(packet)).base64EncodedString()
        } catch {
            throw .malformed("cannot wrap the key packet: \(error)")
        }
    }

    public init(json: [UInt8]) throws(OCICryptError) {
        guard let object = (try? JSONValue.parse(json))?.objectValue else { throw .malformed("the key packet is not a JSON object") }
        guard let kid = object["kid"]?.stringValue else { throw .malformed("the key packet names no 'kid'") }
        let wrapType = object["wrap_type"]?.stringValue ?? "A256GCM"
        guard wrapType == "A256GCM" else { throw .unsupportedCipher("key packet wrap_type \(wrapType)") }
        guard let wrapped = object["wrapped_data"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map(Array.init), wrapped.count > 16,
            let iv = object["iv"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map(Array.init), iv.count == 12
        else { throw .malformed("the key packet's 'wrapped_data'/'iv' are not base64 (ciphertext ‖ 16-byte tag; 12-byte IV)") }
        (keyID, self.wrapped, self.iv) = (kid, wrapped, iv)
    }

    /// The KBS resource path of the key-encryption key (`REPOSITORY/TYPE/TAG`), from a
    /// `kbs:///…` key ID.
    public var resourcePath: String? { Self.resourcePath(of: keyID) }

    /// `REPOSITORY/TYPE/TAG` of a `kbs:///REPOSITORY/TYPE/TAG` URI: three segments, none empty,
    /// `.` or `..`; `nil` for anything else.
    public static func resourcePath(of uri: String) -> String? {
        guard uri.hasPrefix("kbs:///") else { return nil }
        let path = String(uri.dropFirst("kbs:///".count))
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        return segments.count == 3 && segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) ? path : nil
    }

    /// The layer key, with the key-encryption key `kek` (32 bytes).
    public func unwrap(kek: [UInt8]) throws(OCICryptError) -> OCICrypt.LayerKey {
        guard kek.count == 32 else { throw .malformed("the key-encryption key is \(kek.count) bytes, not 32") }
        let plain: [UInt8]
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: iv), ciphertext: wrapped.dropLast(16), tag: wrapped.suffix(16))
            plain = Array(try AES.GCM.open(box, using: SymmetricKey(data: kek)))
        } catch {
            throw .noKeyFor("the key-encryption key for \(keyID) does not open the packet")
        }
        return try OCICrypt.LayerKey(privateOptions: plain)
    }
}

/// Why an encrypted layer could not be opened.
public enum OCICryptError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedCipher(String)
    case noKeyFor(String)
    case hmacMismatch
    case digestMismatch(expected: String, actual: String)

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed encrypted layer: \(why)"
        case .unsupportedCipher(let name): return "unsupported layer cipher \(name) (AES_256_CTR_HMAC_SHA256)"
        case .noKeyFor(let why): return "cannot unwrap the layer key: \(why)"
        case .hmacMismatch: return "the encrypted layer's HMAC does not match: a byte of it was changed (nothing was decrypted)"
        case .digestMismatch(let expected, let actual): return "the decrypted layer is \(actual), not the \(expected) its key names"
        }
    }
}

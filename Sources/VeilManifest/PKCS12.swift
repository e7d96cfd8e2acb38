import Crypto
import FoundationEssentials
import SwiftASN1
import _CryptoExtras

/// PKCS#12 (RFC 7292) key stores and trust stores, the files Java programs (Spark, Kafka,
/// Tomcat…) read their TLS keys and trusted roots from. OpenSSL 3 and Java 17 both read them
/// (KeyStoreTests), though neither writes exactly this by default (OpenSSL 3.0 uses 2,048
/// iterations and encrypts certificates; keytool encrypts them too):
/// - the private key in a `pkcs8ShroudedKeyBag`, encrypted with PBES2 (PBKDF2-HMAC-SHA256,
///   AES-256-CBC, random salt and IV);
/// - certificates in unencrypted `certBag`s (they are public); in a trust store each carries
///   Java's trusted-usage attribute, without which Java ignores a certificate that has no key;
/// - an HMAC-SHA256 integrity MAC keyed by the RFC 7292 appendix B KDF, 10,000 iterations.
///
/// The structures below are written with swift-asn1's DER serializer (lengths, SET OF order
/// and tags are its job). The password protects the file at rest; inside Veil the file is
/// written to memory only, and the password is a coordinator secret rendered beside it.
public enum PKCS12 {
    /// PBKDF2 and MAC-KDF iterations (Java 17's default for new key stores).
    public static let iterations = 10_000

    /// A key store holding one private key (PKCS#8 DER) with its certificate chain, leaf first.
    public static func keyStore(privateKeyDER: [UInt8], chain: [[UInt8]], password: [UInt8], alias: String) throws -> [UInt8] {
        precondition(!chain.isEmpty, "a key entry needs its certificate")
        // Links the key to its certificate, as RFC 7292 section 4.2 suggests.
        let keyAttributes = [
            try BagAttribute(.friendlyName, ASN1BMPString(contentBytes: bmp(alias))),
            try BagAttribute(.localKeyID, ASN1OctetString(contentBytes: ArraySlice(SHA256.hash(data: chain[0])))),
        ]
        let key = SafeBag(value: .shroudedKey(try EncryptedPrivateKeyInfo(privateKeyDER, password: password)), attributes: keyAttributes)
        let certificates = chain.enumerated().map { index, certificate in
            SafeBag(value: .certificate(certificate), attributes: index == 0 ? keyAttributes : nil)
        }
        return try pfx(safeContents: [[key], certificates], password: password)
    }

    /// A trust store: each certificate a trusted entry (Java: `trustedCertEntry`).
    public static func trustStore(certificates: [[UInt8]], password: [UInt8], alias: String) throws -> [UInt8] {
        let bags = try certificates.enumerated().map { index, certificate in
            let name = certificates.count == 1 ? alias : "\(alias)-\(index + 1)"
            return SafeBag(value: .certificate(certificate), attributes: [
                try BagAttribute(.friendlyName, ASN1BMPString(contentBytes: bmp(name))),
                try BagAttribute(.javaTrustedKeyUsage, ASN1ObjectIdentifier.anyExtendedKeyUsage),
            ])
        }
        return try pfx(safeContents: [bags], password: password)
    }

    // MARK: - Structure

    /// `PFX ::= SEQUENCE { version 3, authSafe ContentInfo, macData MacData }`; the MAC covers
    /// the DER of the AuthenticatedSafe (a SEQUENCE OF data ContentInfo, one per SafeContents).
    private static func pfx(safeContents: [[SafeBag]], password: [UInt8]) throws -> [UInt8] {
        let authenticatedSafe = try der { coder in
            try coder.serializeSequenceOf(try safeContents.map { bags in DataContentInfo(content: try der { try $0.serializeSequenceOf(bags) }) })
        }
        let salt = randomBytes(16)
        let macKey = derive(id: 3, password: password, salt: salt, iterations: iterations, count: 32)
        let mac = Array(HMAC<SHA256>.authenticationCode(for: authenticatedSafe, using: SymmetricKey(data: macKey)))
        return try der { coder in
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(3)
                try coder.serialize(DataContentInfo(content: authenticatedSafe))
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(AlgorithmIdentifier(.sha256, parameters: ASN1Null()))
                        try coder.serialize(ASN1OctetString(contentBytes: mac[...]))
                    }
                    try coder.serialize(ASN1OctetString(contentBytes: salt[...]))
                    try coder.serialize(iterations)
                }
            }
        }
    }

    static func der(_ body: (inout DER.Serializer) throws -> Void) throws -> [UInt8] {
        var coder = DER.Serializer()
        try body(&coder)
        return coder.serializedBytes
    }

    /// BMPString content: UTF-16 big-endian.
    static func bmp(_ text: String) -> ArraySlice<UInt8> {
        ArraySlice(text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] })
    }

    /// The RFC 7292 appendix B.2 key derivation with SHA-256 (u = 32, v = 64); the password is
    /// a NUL-terminated BMPString.
    static func derive(id: UInt8, password: [UInt8], salt: [UInt8], iterations: Int, count: Int) -> [UInt8] {
        let v = 64
        let passwordBMP: [UInt8] = String(decoding: password, as: UTF8.self).utf16.flatMap { (unit: UInt16) -> [UInt8] in [UInt8(unit >> 8), UInt8(unit & 0xff)] } + [0, 0]
        func stretch(_ bytes: [UInt8]) -> [UInt8] {
            guard !bytes.isEmpty else { return [] }
            let length = v * ((bytes.count + v - 1) / v)
            return (0..<length).map { bytes[$0 % bytes.count] }
        }
        let diversifier = [UInt8](repeating: id, count: v)
        var input = stretch(salt) + stretch(passwordBMP)
        var output: [UInt8] = []
        while output.count < count {
            var block = Array(SHA256.hash(data: diversifier + input))
            for _ in 1..<iterations { block = Array(SHA256.hash(data: block)) }
            output += block
            let b = stretch(block)
            // I_j = (I_j + B + 1) mod 2^(8v), big-endian, for each v-byte block of I.
            for start in stride(from: 0, to: input.count, by: v) {
                var carry: UInt16 = 1
                for offset in (0..<v).reversed() {
                    let sum = UInt16(input[start + offset]) + UInt16(b[offset]) + carry
                    input[start + offset] = UInt8(sum & 0xff)
                    carry = sum >> 8
                }
            }
        }
        return Array(output.prefix(count))
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}

extension ASN1ObjectIdentifier {
    static let data: Self = "1.2.840.113549.1.7.1"
    static let shroudedKeyBag: Self = "1.2.840.113549.1.12.10.1.2"
    static let certBag: Self = "1.2.840.113549.1.12.10.1.3"
    static let x509Certificate: Self = "1.2.840.113549.1.9.22.1"
    static let friendlyName: Self = "1.2.840.113549.1.9.20"
    static let localKeyID: Self = "1.2.840.113549.1.9.21"
    static let javaTrustedKeyUsage: Self = "2.16.840.1.113894.746875.1.1"
    static let anyExtendedKeyUsage: Self = "2.5.29.37.0"
    static let pbes2: Self = "1.2.840.113549.1.5.13"
    static let pbkdf2: Self = "1.2.840.113549.1.5.12"
    static let hmacWithSHA256: Self = "1.2.840.113549.2.9"
    static let aes256CBC: Self = "2.16.840.1.101.3.4.1.42"
    static let sha256: Self = "2.16.840.1.101.3.4.2.1"
}

/// `ContentInfo` of type `data`: `SEQUENCE { OID data, [0] EXPLICIT OCTET STRING }`.
struct DataContentInfo: DERSerializable {
    var content: [UInt8]

    func serialize(into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(ASN1ObjectIdentifier.data)
            try coder.serialize(ASN1OctetString(contentBytes: content[...]), explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific)
        }
    }
}

/// `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY }`.
struct AlgorithmIdentifier<Parameters: DERSerializable>: DERSerializable {
    var algorithm: ASN1ObjectIdentifier
    var parameters: Parameters

    init(_ algorithm: ASN1ObjectIdentifier, parameters: Parameters) {
        self.algorithm = algorithm
        self.parameters = parameters
    }

    func serialize(into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(algorithm)
            try coder.serialize(parameters)
        }
    }
}

/// `PKCS12Attribute ::= SEQUENCE { attrId OID, attrValues SET OF ANY }` with one value.
struct BagAttribute: DERSerializable {
    var id: ASN1ObjectIdentifier
    var value: ASN1Any

    init(_ id: ASN1ObjectIdentifier, _ value: some DERSerializable) throws {
        self.id = id
        self.value = try ASN1Any(erasing: value)
    }

    func serialize(into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(id)
            try coder.serializeSetOf([value])
        }
    }
}

/// `SafeBag ::= SEQUENCE { bagId OID, bagValue [0] EXPLICIT ANY, bagAttributes SET OF … OPTIONAL }`.
struct SafeBag: DERSerializable {
    enum Value {
        case shroudedKey(EncryptedPrivateKeyInfo)
        /// `CertBag ::= SEQUENCE { x509Certificate OID, [0] EXPLICIT OCTET STRING (the DER) }`.
        case certificate([UInt8])
    }

    var value: Value
    var attributes: [BagAttribute]?

    func serialize(into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            switch value {
            case .shroudedKey(let info):
                try coder.serialize(ASN1ObjectIdentifier.shroudedKeyBag)
                try coder.serialize(info, explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific)
            case .certificate(let der):
                try coder.serialize(ASN1ObjectIdentifier.certBag)
                try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(ASN1ObjectIdentifier.x509Certificate)
                        try coder.serialize(ASN1OctetString(contentBytes: der[...]), explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific)
                    }
                }
            }
            if let attributes { try coder.serializeSetOf(attributes) }
        }
    }
}

/// PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 → AES-256-CBC over the PKCS#8 bytes, as
/// `EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }`.
struct EncryptedPrivateKeyInfo: DERSerializable {
    var salt: [UInt8]
    var iv: [UInt8]
    var ciphertext: [UInt8]

    init(_ privateKeyDER: [UInt8], password: [UInt8]) throws {
        salt = PKCS12.randomBytes(16)
        let iv = AES._CBC.IV()
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: password, salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: PKCS12.iterations)
        ciphertext = Array(try AES._CBC.encrypt(privateKeyDER, using: key, iv: iv))
        self.iv = Array(iv)
    }

    func serialize(into coder: inout DER.Serializer) throws {
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(ASN1ObjectIdentifier.pbes2)
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try coder.appendConstructedNode(identifier: .sequence) { coder in
                        try coder.serialize(ASN1ObjectIdentifier.pbkdf2)
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try coder.serialize(ASN1OctetString(contentBytes: salt[...]))
                            try coder.serialize(PKCS12.iterations)
                            try coder.serialize(AlgorithmIdentifier(.hmacWithSHA256, parameters: ASN1Null()))
                        }
                    }
                    try coder.serialize(AlgorithmIdentifier(.aes256CBC, parameters: ASN1OctetString(contentBytes: iv[...])))
                }
            }
            try coder.serialize(ASN1OctetString(contentBytes: ciphertext[...]))
        }
    }
}

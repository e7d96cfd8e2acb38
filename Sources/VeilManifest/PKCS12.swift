import Crypto
import FoundationEssentials
import _CryptoExtras

/// PKCS#12 (RFC 7292) key stores and trust stores, the files Java programs (Spark, Kafka,
/// Tomcat…) read their TLS keys and trusted roots from.
///
/// The layout is the one OpenSSL 3 and Java 17 write by default, so both read it:
/// - the private key in a `pkcs8ShroudedKeyBag`, encrypted with PBES2 (PBKDF2-HMAC-SHA256,
///   AES-256-CBC, random salt and IV);
/// - certificates in unencrypted `certBag`s (they are public); in a trust store each carries
///   Java's trusted-usage attribute, without which Java ignores a certificate that has no key;
/// - an HMAC-SHA256 integrity MAC keyed by the RFC 7292 appendix B KDF.
///
/// The password protects the file at rest; inside Veil the file is written to memory only, and
/// the password is a coordinator secret rendered into the program's configuration beside it.
public enum PKCS12 {
    /// PBKDF2 and MAC-KDF iterations (Java 17's default for new key stores).
    public static let iterations = 10_000

    /// A key store holding one private key (PKCS#8 DER) with its certificate chain, leaf first.
    public static func keyStore(privateKeyDER: [UInt8], chain: [[UInt8]], password: [UInt8], alias: String) throws -> [UInt8] {
        precondition(!chain.isEmpty, "a key entry needs its certificate")
        // Links the key to its certificate, as RFC 7292 section 4.2 suggests.
        let localKeyID = Array(SHA256.hash(data: chain[0]))
        let keyAttributes = DERWriter.set([
            attribute(Self.friendlyName, DERWriter.bmpString(alias)),
            attribute(Self.localKeyID, DERWriter.octetString(localKeyID)),
        ])
        let keyBag = DERWriter.sequence(
            DERWriter.oid(Self.shroudedKeyBag),
            DERWriter.explicit(0, try encryptedPrivateKeyInfo(privateKeyDER, password: password)),
            keyAttributes)
        let certificateBags = chain.enumerated().map { index, certificate in
            certificateBag(certificate, attributes: index == 0 ? keyAttributes : nil)
        }
        return try pfx(safeContents: [DERWriter.sequence(keyBag), DERWriter.sequence(of: certificateBags)], password: password)
    }

    /// A trust store: each certificate a trusted entry (Java: `trustedCertEntry`).
    public static func trustStore(certificates: [[UInt8]], password: [UInt8], alias: String) throws -> [UInt8] {
        let bags = certificates.enumerated().map { index, certificate in
            let name = certificates.count == 1 ? alias : "\(alias)-\(index + 1)"
            return certificateBag(certificate, attributes: DERWriter.set([
                attribute(Self.friendlyName, DERWriter.bmpString(name)),
                attribute(Self.javaTrustedKeyUsage, DERWriter.oid(Self.anyExtendedKeyUsage)),
            ]))
        }
        return try pfx(safeContents: [DERWriter.sequence(of: bags)], password: password)
    }

    // MARK: - Structure

    private static func pfx(safeContents: [[UInt8]], password: [UInt8]) throws -> [UInt8] {
        let authenticatedSafe = DERWriter.sequence(of: safeContents.map(dataContentInfo))
        let salt = randomBytes(16)
        let macKey = derive(id: 3, password: password, salt: salt, iterations: iterations, count: 32)
        let mac = Array(HMAC<SHA256>.authenticationCode(for: authenticatedSafe, using: SymmetricKey(data: macKey)))
        let macData = DERWriter.sequence(
            DERWriter.sequence(DERWriter.sequence(DERWriter.oid(Self.sha256), DERWriter.null), DERWriter.octetString(mac)),
            DERWriter.octetString(salt),
            DERWriter.integer(iterations))
        return DERWriter.sequence(DERWriter.integer(3), dataContentInfo(authenticatedSafe), macData)
    }

    private static func dataContentInfo(_ content: [UInt8]) -> [UInt8] {
        DERWriter.sequence(DERWriter.oid(Self.data), DERWriter.explicit(0, DERWriter.octetString(content)))
    }

    private static func certificateBag(_ certificate: [UInt8], attributes: [UInt8]?) -> [UInt8] {
        let value = DERWriter.sequence(DERWriter.oid(Self.x509Certificate), DERWriter.explicit(0, DERWriter.octetString(certificate)))
        return DERWriter.sequence(DERWriter.oid(Self.certBag), DERWriter.explicit(0, value), attributes ?? [])
    }

    private static func attribute(_ oid: String, _ value: [UInt8]) -> [UInt8] {
        DERWriter.sequence(DERWriter.oid(oid), DERWriter.set([value]))
    }

    /// PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 → AES-256-CBC over the PKCS#8 bytes.
    private static func encryptedPrivateKeyInfo(_ privateKeyDER: [UInt8], password: [UInt8]) throws -> [UInt8] {
        let salt = randomBytes(16)
        let iv = AES._CBC.IV()
        let key = try KDF.Insecure.PBKDF2.deriveKey(
            from: password, salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: iterations)
        let ciphertext = try AES._CBC.encrypt(privateKeyDER, using: key, iv: iv)
        let parameters = DERWriter.sequence(
            DERWriter.sequence(
                DERWriter.oid(Self.pbkdf2),
                DERWriter.sequence(
                    DERWriter.octetString(salt), DERWriter.integer(iterations),
                    DERWriter.sequence(DERWriter.oid(Self.hmacWithSHA256), DERWriter.null))),
            DERWriter.sequence(DERWriter.oid(Self.aes256CBC), DERWriter.octetString(Array(iv))))
        return DERWriter.sequence(DERWriter.sequence(DERWriter.oid(Self.pbes2), parameters), DERWriter.octetString(Array(ciphertext)))
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

    private static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    static let data = "1.2.840.113549.1.7.1"
    static let shroudedKeyBag = "1.2.840.113549.1.12.10.1.2"
    static let certBag = "1.2.840.113549.1.12.10.1.3"
    static let x509Certificate = "1.2.840.113549.1.9.22.1"
    static let friendlyName = "1.2.840.113549.1.9.20"
    static let localKeyID = "1.2.840.113549.1.9.21"
    static let javaTrustedKeyUsage = "2.16.840.1.113894.746875.1.1"
    static let anyExtendedKeyUsage = "2.5.29.37.0"
    static let pbes2 = "1.2.840.113549.1.5.13"
    static let pbkdf2 = "1.2.840.113549.1.5.12"
    static let hmacWithSHA256 = "1.2.840.113549.2.9"
    static let aes256CBC = "2.16.840.1.101.3.4.1.42"
    static let sha256 = "2.16.840.1.101.3.4.2.1"
}

/// Just enough DER to write PKCS#12: every function returns one complete encoding.
enum DERWriter {
    static func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out = [tag]
        if content.count < 0x80 {
            out.append(UInt8(content.count))
        } else {
            var length = content.count
            var bytes: [UInt8] = []
            while length > 0 { bytes.insert(UInt8(length & 0xff), at: 0); length >>= 8 }
            out.append(0x80 | UInt8(bytes.count))
            out += bytes
        }
        return out + content
    }

    static func sequence(_ parts: [UInt8]...) -> [UInt8] { tlv(0x30, parts.flatMap { $0 }) }
    static func sequence(of elements: [[UInt8]]) -> [UInt8] { tlv(0x30, elements.flatMap { $0 }) }
    /// A SET OF: DER orders the elements by their encodings.
    static func set(_ elements: [[UInt8]]) -> [UInt8] { tlv(0x31, elements.sorted { $0.lexicographicallyPrecedes($1) }.flatMap { $0 }) }
    static func explicit(_ number: UInt8, _ content: [UInt8]) -> [UInt8] { tlv(0xa0 | number, content) }
    static func octetString(_ bytes: [UInt8]) -> [UInt8] { tlv(0x04, bytes) }
    static let null: [UInt8] = [0x05, 0x00]

    static func integer(_ value: Int) -> [UInt8] {
        precondition(value >= 0)
        var bytes: [UInt8] = []
        var rest = value
        repeat { bytes.insert(UInt8(rest & 0xff), at: 0); rest >>= 8 } while rest > 0
        if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
        return tlv(0x02, bytes)
    }

    static func bmpString(_ text: String) -> [UInt8] {
        tlv(0x1e, text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] })
    }

    static func oid(_ dotted: String) -> [UInt8] {
        let arcs = dotted.split(separator: ".").map { UInt64($0)! }
        var content = base128(arcs[0] * 40 + arcs[1])
        for arc in arcs.dropFirst(2) { content += base128(arc) }
        return tlv(0x06, content)
    }

    private static func base128(_ value: UInt64) -> [UInt8] {
        var bytes = [UInt8(value & 0x7f)]
        var rest = value >> 7
        while rest > 0 { bytes.insert(UInt8(rest & 0x7f) | 0x80, at: 0); rest >>= 7 }
        return bytes
    }
}

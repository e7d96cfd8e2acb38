import SwiftASN1
import VeilCore
import X509

extension Certificate {
    /// The certificate's DER encoding.
    public var derBytes: [UInt8] {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(self)
            return serializer.serializedBytes
        }
    }
}

extension Certificate.PublicKey {
    /// The full SubjectPublicKeyInfo DER (algorithm identifier and key), as in a `PUBLIC KEY` PEM.
    public var subjectPublicKeyInfoDER: [UInt8] {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(self)
            return serializer.serializedBytes
        }
    }
}

/// Encoding checks swift-certificates leaves to the caller.
public enum CertificateEncoding {
    /// `true` when `der` is a `Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING }` whose
    /// signature BIT STRING declares no unused bits. Signatures are whole bytes; a non-zero
    /// count is non-canonical, and reference verifiers (webpki, dcap-qvl) refuse it.
    public static func signatureHasNoUnusedBits(_ der: [UInt8]) -> Bool {
        guard let node = try? DER.parse(der), case .constructed(let parts) = node.content else { return false }
        let items = Array(parts)
        guard items.count == 3, let bits = try? ASN1BitString(derEncoded: items[2]) else { return false }
        return bits.paddingBits == 0
    }
}

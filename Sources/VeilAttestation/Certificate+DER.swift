import SwiftASN1
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

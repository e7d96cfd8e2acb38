import FoundationEssentials
import VeilImageFormat
import VeilJOSE

/// The keys that open an image's ocicrypt-encrypted layers: private keys for JWE-wrapped layer
/// keys, and key-encryption keys for CoCo key packets, each under the KBS resource path its
/// packet names (`kbs:///REPOSITORY/TYPE/TAG`).
public struct LayerKeyring: Sendable {
    public var privateKeys: [JWEPrivateKey]
    public var keyEncryptionKeys: [String: [UInt8]]

    public init(privateKeys: [JWEPrivateKey] = [], keyEncryptionKeys: [String: [UInt8]] = [:]) {
        self.privateKeys = privateKeys
        self.keyEncryptionKeys = keyEncryptionKeys
    }

    /// The layer key of `layer`: from its JWE when a private key is held, else from its CoCo
    /// key packet with the key-encryption key released under the packet's resource path.
    public func key(for layer: Descriptor) throws(OCICryptError) -> OCICrypt.LayerKey {
        let annotations = layer.annotations ?? [:]
        if annotations[OCICrypt.jweAnnotation] != nil, !privateKeys.isEmpty {
            return try OCICrypt.layerKey(annotations: annotations, keys: privateKeys)
        }
        if let packet = try Self.packet(annotations) {
            guard let kek = keyEncryptionKeys[try Self.resourcePath(of: packet)] else { throw .noKeyFor("no key-encryption key was released for \(packet.keyID)") }
            return try packet.unwrap(kek: kek)
        }
        return try OCICrypt.layerKey(annotations: annotations, keys: privateKeys)
    }

    /// The KBS resources the CoCo key packets of `layers` name, in order, each once.
    public static func packetResources(of layers: [Descriptor]) throws(OCICryptError) -> [String] {
        var paths: [String] = []
        for layer in layers {
            guard let packet = try packet(layer.annotations ?? [:]) else { continue }
            let path = try resourcePath(of: packet)
            if !paths.contains(path) { paths.append(path) }
        }
        return paths
    }

    static func resourcePath(of packet: CoCoKeyPacket) throws(OCICryptError) -> String {
        guard let path = packet.resourcePath else { throw .noKeyFor("the key packet's kid '\(packet.keyID)' is not kbs:///REPOSITORY/TYPE/TAG") }
        return path
    }

    static func packet(_ annotations: [String: String]) throws(OCICryptError) -> CoCoKeyPacket? {
        guard let encoded = annotations[CoCoKeyPacket.annotation] else { return nil }
        guard let json = Data(base64Encoded: encoded) else { throw .malformed("\(CoCoKeyPacket.annotation) is not standard base64") }
        return try CoCoKeyPacket(json: Array(json))
    }
}

extension Descriptor {
    /// An ocicrypt-encrypted layer (`…+encrypted`).
    public var isEncrypted: Bool { mediaType.hasSuffix(OCICrypt.encryptedMediaTypeSuffix) }
}

import Crypto
import Foundation
import Testing
import VeilImage
import VeilImageFormat
import VeilJOSE

/// ocicrypt-encrypted layers made by real skopeo 1.9.3 (../shared/testdata/ocicrypt/skopeo-jwe:
/// RSA-OAEP with SHA-1, ECDH-ES+A256KW on P-256, a two-recipient JWE with go-jose's duplicated
/// `encrypted_key`, one layer of two encrypted) and CoCo's sample key packet: each layer key
/// unwraps with its key, every layer decrypts to the plain layout's layer byte for byte and to
/// the config's diff_id, and each broken part is refused with its reason.
@Suite struct OCICryptTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/testdata/ocicrypt").path

    struct Layer {
        var mediaType: String
        var digest: String
        var annotations: [String: String]
        var blob: [UInt8]
    }

    /// The layers of a fixture layout's one manifest, and the config's diff_ids.
    static func layers(_ layout: String) throws -> (layers: [Layer], diffIDs: [String]) {
        let root = "\(fixtures)/skopeo-jwe/\(layout)"
        func blob(_ digest: String) throws -> [UInt8] {
            Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/blobs/sha256/\(digest.dropFirst("sha256:".count))")))
        }
        func object(_ bytes: [UInt8]) throws -> [String: Any] { try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]) }
        let index = try object(Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/index.json"))))
        let manifestDigest = try #require((index["manifests"] as? [[String: Any]])?.first?["digest"] as? String)
        let manifest = try object(try blob(manifestDigest))
        let config = try object(try blob(try #require((manifest["config"] as? [String: Any])?["digest"] as? String)))
        let diffIDs = try #require((config["rootfs"] as? [String: Any])?["diff_ids"] as? [String])
        let layers = try #require(manifest["layers"] as? [[String: Any]]).map { entry in
            let digest = try #require(entry["digest"] as? String)
            return Layer(mediaType: try #require(entry["mediaType"] as? String), digest: digest,
                         annotations: entry["annotations"] as? [String: String] ?? [:], blob: try blob(digest))
        }
        return (layers, diffIDs)
    }

    static func key(_ name: String) throws -> JWEPrivateKey {
        try JWEPrivateKey(pem: try String(contentsOfFile: "\(fixtures)/skopeo-jwe/keys/\(name)", encoding: .utf8))
    }

    static func sha256(_ bytes: [UInt8]) -> String { "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    static func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let stream = try GunzipStream(BytesStream(bytes))
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if count == 0 { return out }
            out += buffer[..<count]
        }
    }

    @Test(arguments: [("enc-rsa", "rsa2048-priv.pem"), ("enc-ec", "ecp256-priv.pem"), ("enc-multi", "rsa2048-priv.pem"),
                      ("enc-multi", "ecp256-priv.pem"), ("enc-rsa-lastlayer", "rsa2048-priv.pem")])
    func skopeoLayersDecryptToThePlainLayers(layout: String, keyFile: String) throws {
        let plain = try Self.layers("plain")
        let encrypted = try Self.layers(layout)
        #expect(encrypted.diffIDs == plain.diffIDs, "the config (diff_ids of the plaintext) is unchanged by encryption")
        let key = try Self.key(keyFile)
        var decryptedCount = 0
        for (index, layer) in encrypted.layers.enumerated() {
            guard layer.mediaType.hasSuffix(OCICrypt.encryptedMediaTypeSuffix) else {
                #expect(layer.digest == plain.layers[index].digest, "a layer left plain is the plain layer")
                continue
            }
            let layerKey = try OCICrypt.layerKey(annotations: layer.annotations, keys: [key])
            #expect(layerKey.digest == plain.layers[index].digest)
            let decrypted = try OCICrypt.decrypt(layer: layer.blob, annotations: layer.annotations, key: layerKey)
            #expect(decrypted == plain.layers[index].blob, "layer \(index) byte for byte")
            #expect(Self.sha256(try Self.gunzip(decrypted)) == plain.diffIDs[index], "layer \(index)'s diff_id")
            decryptedCount += 1
        }
        #expect(decryptedCount == (layout == "enc-rsa-lastlayer" ? 1 : 2))
    }

    @Test func everyBrokenPartIsRefusedWithItsReason() throws {
        let layer = try Self.layers("enc-rsa").layers[1]
        let rsa = try Self.key("rsa2048-priv.pem")
        let wrongKey = #expect(throws: OCICryptError.self) { try OCICrypt.layerKey(annotations: layer.annotations, keys: [try Self.key("ecp256-priv.pem")]) }
        #expect("\(wrongKey.map { "\($0)" } ?? "")".contains("none of the 1 key(s) unwraps it"))
        let key = try OCICrypt.layerKey(annotations: layer.annotations, keys: [rsa])

        var flipped = layer.blob
        flipped[flipped.count / 2] ^= 1
        #expect(throws: OCICryptError.hmacMismatch, "one flipped ciphertext byte") { try OCICrypt.decrypt(layer: flipped, annotations: layer.annotations, key: key) }
        #expect(throws: OCICryptError.hmacMismatch, "a truncated layer") { try OCICrypt.decrypt(layer: Array(layer.blob.dropLast()), annotations: layer.annotations, key: key) }

        // The other layer's key (another digest) opens its own HMAC check only.
        let other = try Self.layers("enc-rsa").layers[0]
        let otherKey = try OCICrypt.layerKey(annotations: other.annotations, keys: [rsa])
        #expect(throws: OCICryptError.hmacMismatch, "a layer with another layer's key") { try OCICrypt.decrypt(layer: layer.blob, annotations: layer.annotations, key: otherKey) }

        // A JWE whose ciphertext was changed: the content does not decrypt.
        let annotation = try #require(layer.annotations[OCICrypt.jweAnnotation])
        let jwe = try #require(Data(base64Encoded: annotation))
        var object = try #require(try JSONSerialization.jsonObject(with: jwe) as? [String: Any])
        let ciphertext = try #require(object["ciphertext"] as? String)
        object["ciphertext"] = (ciphertext.first == "A" ? "B" : "A") + ciphertext.dropFirst()
        var changed = layer.annotations
        changed[OCICrypt.jweAnnotation] = try JSONSerialization.data(withJSONObject: object).base64EncodedString()
        #expect(throws: OCICryptError.self) { try OCICrypt.layerKey(annotations: changed, keys: [rsa]) }

        var noKeys = layer.annotations
        noKeys[OCICrypt.jweAnnotation] = nil
        #expect(throws: OCICryptError.noKeyFor("the layer names no wrapped key")) { try OCICrypt.layerKey(annotations: noKeys, keys: [rsa]) }
        var otherCipher = layer.annotations
        otherCipher[OCICrypt.publicOptionsAnnotation] = Data(#"{"cipher":"AES_128_CTR","hmac":"","cipheroptions":{}}"#.utf8).base64EncodedString()
        #expect(throws: OCICryptError.unsupportedCipher("AES_128_CTR")) { try OCICrypt.decrypt(layer: layer.blob, annotations: otherCipher, key: key) }
    }

    /// A layer key whose digest names other content: the HMAC holds (same key), the digest does not.
    @Test func aLayerKeyNamingAnotherDigestIsRefusedAfterDecryption() throws {
        let layer = try Self.layers("enc-ec").layers[0]
        let key = try OCICrypt.layerKey(annotations: layer.annotations, keys: [try Self.key("ecp256-priv.pem")])
        let lying = try OCICrypt.LayerKey(privateOptions: Array(#"""
            {"symkey":"\#(Data(key.symmetricKey).base64EncodedString())","digest":"sha256:\#(String(repeating: "0", count: 64))","cipheroptions":{"nonce":"\#(Data(key.nonce).base64EncodedString())"}}
            """#.utf8))
        let error = #expect(throws: OCICryptError.self) { try OCICrypt.decrypt(layer: layer.blob, annotations: layer.annotations, key: lying) }
        guard case .digestMismatch(let expected, let actual) = error else { Issue.record("\(String(describing: error))"); return }
        #expect(expected.hasSuffix(String(repeating: "0", count: 64)) && actual == key.digest)
        // skopeo names the uncompressed tar's digest for a layer it compressed while encrypting:
        // a key naming exactly the diff_id the caller then checks is accepted, no other digest.
        let zeros = "sha256:" + String(repeating: "0", count: 64)
        #expect(try OCICrypt.decrypt(layer: layer.blob, annotations: layer.annotations, key: lying, diffID: zeros).count == layer.blob.count)
        #expect(throws: OCICryptError.self) {
            try OCICrypt.decrypt(layer: layer.blob, annotations: layer.annotations, key: lying, diffID: "sha256:" + String(repeating: "1", count: 64))
        }
    }

    /// CoCo's sample key-broker packet (guest-components' ocicrypt-rs test data) unwraps with the
    /// sample KBC's hard-coded key to the private options its README records.
    @Test func cocosSamplePacketUnwrapsWithItsKey() throws {
        let directory = "\(Self.fixtures)/coco-annotation-packet"
        let packet = try CoCoKeyPacket(json: Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/sample_kbc_annotation.json"))))
        #expect(packet.keyID == "kbs:///default/key/1" && packet.resourcePath == "default/key/1")
        let kek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/sample_kbc_hardcoded_key.bin")))
        let key = try packet.unwrap(kek: kek)
        #expect(Data(key.symmetricKey).base64EncodedString() == "1jL2jJV0Oyz2nmPkLtqulW6cKcpIUN5FpILcVnP5Uqs=")
        #expect(key.digest == "sha256:18be1897f9402f27c8c0eba7c86e0c00f5656db62961b5949d55f9565c42c6e7")
        #expect(Data(key.nonce).base64EncodedString() == "r10F9oaCu+nWFXfod3l83g==")
        var wrong = kek
        wrong[0] ^= 1
        #expect(throws: OCICryptError.noKeyFor("the key-encryption key for kbs:///default/key/1 does not open the packet")) { try packet.unwrap(kek: wrong) }
        // The packet v2 test file parses (its key is not upstream), with its odd doubled kid.
        let v2 = try CoCoKeyPacket(json: Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/cdh-v1.json"))))
        #expect(v2.resourcePath == nil, "kbs:///kbs:///default/key/1 names no REPOSITORY/TYPE/TAG")
    }
}

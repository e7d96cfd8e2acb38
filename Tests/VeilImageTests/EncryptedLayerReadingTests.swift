import Crypto
import Foundation
import Testing
import VeilImage
import VeilImageFormat
import VeilJOSE

/// `SourceImage.readLayer(_:keys:)` on the real skopeo 1.9.3 layouts: every encrypted layout
/// unpacks with its key to exactly the plain layout's files (the fixture text and the 64 KiB of
/// random bytes), through the same unpacker `veil run` uses; without a key, with another
/// recipient's key, and with CoCo packets whose key-encryption key was not released, nothing is
/// unpacked and the reason names the layer.
@Suite struct EncryptedLayerReadingTests {
    static let layouts = OCICryptTests.fixtures + "/skopeo-jwe"

    /// Unpacks every layer of `layout`'s image into a fresh directory; returns it.
    static func unpack(_ layout: String, keys: LayerKeyring?) throws -> String {
        let image = try SourceImage.open(.ociLayout(directory: "\(layouts)/\(layout)", tag: "t"))
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("veil-enc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        do {
            let unpacker = try RootfsUnpacker(root: root)
            for index in image.layers.indices {
                try image.readLayer(index, keys: keys) { try unpacker.apply(layer: index, tar: $0) }
            }
        } catch {
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
        return root
    }

    static func files(_ root: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for path in try #require(FileManager.default.subpathsOfDirectory(atPath: root) as [String]?) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(root)/\(path)", isDirectory: &isDirectory), !isDirectory.boolValue {
                files[path] = try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(path)"))
            }
        }
        return files
    }

    @Test(arguments: [("enc-rsa", "rsa2048-priv.pem"), ("enc-ec", "ecp256-priv.pem"), ("enc-multi", "rsa2048-priv.pem"),
                      ("enc-multi", "ecp256-priv.pem"), ("enc-rsa-lastlayer", "rsa2048-priv.pem")])
    func everyEncryptedLayoutUnpacksToThePlainFiles(layout: String, key: String) throws {
        let plain = try Self.unpack("plain", keys: nil)
        let opened = try Self.unpack(layout, keys: LayerKeyring(privateKeys: [try OCICryptTests.key(key)]))
        defer { for root in [plain, opened] { try? FileManager.default.removeItem(atPath: root) } }
        let expected = try Self.files(plain)
        #expect(expected["etc/veil-fixture.txt"] == Data("hello from veil ocicrypt fixture\n".utf8))
        #expect(expected["etc/random-64k.bin"]?.count == 65536)
        #expect(try Self.files(opened) == expected, "\(layout) with \(key)")
    }

    @Test func anEncryptedLayerWithoutItsKeyUnpacksNothing() throws {
        func refusal(_ layout: String, _ keys: LayerKeyring?) -> String {
            do {
                let root = try Self.unpack(layout, keys: keys)
                try? FileManager.default.removeItem(atPath: root)
                return "unpacked"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal("enc-rsa", nil) == "encrypted layer 0: it is encrypted and no key to open it was given")
        #expect(refusal("enc-rsa-lastlayer", nil) == "encrypted layer 1: it is encrypted and no key to open it was given",
                "the plain layer before it is read, the encrypted one refused")
        let wrong = refusal("enc-rsa", LayerKeyring(privateKeys: [try OCICryptTests.key("ecp256-priv.pem")]))
        #expect(wrong.hasPrefix("encrypted layer 0: cannot unwrap the layer key: no given key opens the layer's JWE"), "\(wrong)")
        let noPrivateKey = refusal("enc-ec", LayerKeyring(keyEncryptionKeys: ["default/key/1": [UInt8](repeating: 1, count: 32)]))
        #expect(noPrivateKey.hasPrefix("encrypted layer 0: cannot unwrap the layer key"), "\(noPrivateKey)")
    }

    /// CoCo's sample packet names `kbs:///default/key/1`: that is the resource a run asks the
    /// key broker for, and only its key-encryption key opens the packet.
    @Test func cocoPacketsNameTheirResourceAndOpenOnlyWithItsKey() throws {
        let packetJSON = try Data(contentsOf: URL(fileURLWithPath: OCICryptTests.fixtures + "/coco-annotation-packet/sample_kbc_annotation.json"))
        let kek = Array(try Data(contentsOf: URL(fileURLWithPath: OCICryptTests.fixtures + "/coco-annotation-packet/sample_kbc_hardcoded_key.bin")))
        let layer = Descriptor(
            mediaType: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted", digest: try BlobDigest(parsing: "sha256:" + String(repeating: "0", count: 64)),
            size: 1, annotations: [CoCoKeyPacket.annotation: packetJSON.base64EncodedString()])
        #expect(layer.isEncrypted)
        #expect(try LayerKeyring.packetResources(of: [layer, layer]) == ["default/key/1"])
        let key = try LayerKeyring(keyEncryptionKeys: ["default/key/1": kek]).key(for: layer)
        #expect(key.digest == "sha256:18be1897f9402f27c8c0eba7c86e0c00f5656db62961b5949d55f9565c42c6e7")
        #expect(throws: OCICryptError.noKeyFor("no key-encryption key was released for kbs:///default/key/1")) {
            try LayerKeyring(keyEncryptionKeys: ["default/key/2": kek]).key(for: layer)
        }
        var changed = kek
        changed[0] ^= 1
        #expect(throws: OCICryptError.noKeyFor("the key-encryption key for kbs:///default/key/1 does not open the packet")) {
            try LayerKeyring(keyEncryptionKeys: ["default/key/1": changed]).key(for: layer)
        }
    }
}

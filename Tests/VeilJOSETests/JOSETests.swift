import Crypto
import FoundationEssentials
import Testing
import VeilCore
import _CryptoExtras

@testable import VeilJOSE

@Suite struct JOSETests {
    /// Trustee's own binding vector (attestation-service `parse_runtimedata_json_binding`).
    @Test func jcsMatchesTrusteesRuntimeDataVector() throws {
        let value = try JSONValue.parse(Array(#"{"b": 1, "a": "test", "c": {"d": "e"}}"#.utf8))
        let canonical = try JCS.encode(value)
        #expect(String(decoding: canonical, as: UTF8.self) == #"{"a":"test","b":1,"c":{"d":"e"}}"#)
        #expect(Hex.encode(SHA384.hash(data: canonical)) == "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3")
    }

    @Test func jcsEscapesAsTheRFCPrescribesAndSortsByUTF16() throws {
        let value = JSONValue.object(["\u{E9}": .number(1), "z": .string("a\"\\\n\u{01}/é"), "\u{1F600}": .bool(true), "a": .number(-2.5)])
        let text = String(decoding: try JCS.encode(value), as: UTF8.self)
        // U+1F600 is a surrogate pair (D83D…), before U+E9? No: 0x00E9 < 0xD83D, so é comes first.
        #expect(text == #"{"a":-2.5,"z":"a\"\\\n\u0001/é","é":1,"😀":true}"#)
        #expect(throws: JCS.UnsupportedNumber.self) { try JCS.encode(.number(1e300)) }
    }

    /// RFC 7518 Appendix C: ECDH-ES key agreement computation.
    @Test func concatKDFMatchesRFC7518AppendixC() throws {
        let alice = try P256.KeyAgreement.PrivateKey(rawRepresentation: Base64URL.decode("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo")!)
        let bob = try P256.KeyAgreement.PublicKey(
            rawRepresentation: Base64URL.decode("weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ")! + Base64URL.decode("e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck")!)
        let z = try alice.sharedSecretFromKeyAgreement(with: bob).withUnsafeBytes { Array($0) }
        let key = ConcatKDF.derive(z: z, algorithm: "A128GCM", partyU: Array("Alice".utf8), partyV: Array("Bob".utf8), keyBits: 128)
        #expect(key.withUnsafeBytes { Base64URL.encode($0) } == "VqqN6vgjbSBcIijNcacQGg")
    }

    @Test func base64URLRefusesPaddingAndTheStandardAlphabet() {
        #expect(Base64URL.decode("QWxpY2U") == Array("Alice".utf8))
        #expect(Base64URL.decode("QWxpY2U=") == nil)
        #expect(Base64URL.decode("a+b/") == nil)
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
    }

    @Test func rsaRecipientDecryptsWithItsPrivateKey() throws {
        let privateKey = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        let jwk = try rsaJWK(privateKey.publicKey, alg: "RSA-OAEP-256")
        let jwe = try FlattenedJWE.encrypt(Array("resource bytes".utf8), to: try JWEPublicKey(jwk: jwk))
        let header = try JSONValue.parse(Base64URL.decode(jwe.protected)!)
        #expect(header["alg"]?.stringValue == "RSA-OAEP-256" && header["enc"]?.stringValue == "A256GCM")
        let contentKey = try privateKey.decrypt(Data(Base64URL.decode(jwe.encryptedKey)!), padding: .PKCS1_OAEP_SHA256)
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: Base64URL.decode(jwe.iv)!), ciphertext: Base64URL.decode(jwe.ciphertext)!, tag: Base64URL.decode(jwe.tag)!)
        let plaintext = try AES.GCM.open(box, using: SymmetricKey(data: contentKey), authenticating: Array(jwe.protected.utf8))
        #expect(Array(plaintext) == Array("resource bytes".utf8))
    }

    @Test func ecRecipientDecryptsWithItsPrivateKey() throws {
        let recipient = P256.KeyAgreement.PrivateKey()
        var jwk = JWEPublicKey.jwk(of: recipient.publicKey).objectValue!
        jwk["alg"] = .string("ECDH-ES+A256KW")
        let jwe = try FlattenedJWE.encrypt([1, 2, 3], to: try JWEPublicKey(jwk: .object(jwk)))
        let header = try JSONValue.parse(Base64URL.decode(jwe.protected)!)
        let epk = try P256.KeyAgreement.PublicKey(
            rawRepresentation: Base64URL.decode(header["epk"]!["x"]!.stringValue!)! + Base64URL.decode(header["epk"]!["y"]!.stringValue!)!)
        let z = try recipient.sharedSecretFromKeyAgreement(with: epk).withUnsafeBytes { Array($0) }
        let kek = ConcatKDF.derive(z: z, algorithm: "ECDH-ES+A256KW", keyBits: 256)
        let contentKey = try AES.KeyWrap.unwrap(Base64URL.decode(jwe.encryptedKey)!, using: kek)
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: Base64URL.decode(jwe.iv)!), ciphertext: Base64URL.decode(jwe.ciphertext)!, tag: Base64URL.decode(jwe.tag)!)
        #expect(Array(try AES.GCM.open(box, using: contentKey, authenticating: Array(jwe.protected.utf8))) == [1, 2, 3])
    }

    @Test func weakOrUnknownKeysAreRefusedWithTheirReason() throws {
        let privateKey = try _RSA.Encryption.PrivateKey(keySize: .bits2048)
        #expect(throws: JOSEError.unsupportedAlgorithm("RSA1_5")) { try JWEPublicKey(jwk: try rsaJWK(privateKey.publicKey, alg: "RSA1_5")) }
        #expect(throws: JOSEError.unsupportedAlgorithm("RSA-OAEP")) { try JWEPublicKey(jwk: try rsaJWK(privateKey.publicKey, alg: "RSA-OAEP")) }
        #expect("\(JOSEError.unsupportedAlgorithm("RSA1_5"))".contains("padding-oracle"))
        var ec = JWEPublicKey.jwk(of: P256.KeyAgreement.PrivateKey().publicKey).objectValue!
        ec["crv"] = .string("P-384")
        #expect(throws: JOSEError.unsupportedCurve("P-384")) { try JWEPublicKey(jwk: .object(ec)) }
        ec["crv"] = .string("P-256")
        ec["x"] = .string(Base64URL.encode([UInt8](repeating: 1, count: 32)))
        #expect(throws: JOSEError.self) { try JWEPublicKey(jwk: .object(ec)) }
        #expect(throws: JOSEError.self) { try JWEPublicKey(jwk: .string("not a key")) }
    }

    @Test func jwtVerifiesOnlyWithItsKeyAndUntouched() throws {
        let key = P256.Signing.PrivateKey()
        let token = try JWT.sign(claims: ["sub": .string("svc"), "exp": .number(1)], extraHeader: ["kid": .string("k")], with: key)
        let verified = try JWT.verified(token, key: key.publicKey)
        #expect(verified.claims["sub"]?.stringValue == "svc" && verified.header["kid"]?.stringValue == "k")
        #expect(throws: JOSEError.badSignature) { try JWT.verified(token, key: P256.Signing.PrivateKey().publicKey) }
        var pieces = token.split(separator: ".").map(String.init)
        pieces[1] = Base64URL.encode(try JCS.encode(.object(["sub": .string("other"), "exp": .number(1)])))
        #expect(throws: JOSEError.badSignature) { try JWT.verified(pieces.joined(separator: "."), key: key.publicKey) }
        #expect(throws: JOSEError.self) { try JWT.verified("a.b", key: key.publicKey) }
        let none = Base64URL.encode(Array(#"{"alg":"none"}"#.utf8)) + "." + pieces[1] + "."
        #expect(throws: JOSEError.unsupportedAlgorithm("none")) { try JWT.verified(none, key: key.publicKey) }
    }

    func rsaJWK(_ key: _RSA.Encryption.PublicKey, alg: String) throws -> JSONValue {
        let primitives = try key.getKeyPrimitives()
        return .object(["kty": .string("RSA"), "alg": .string(alg), "n": .string(Base64URL.encode(primitives.modulus)), "e": .string(Base64URL.encode(primitives.publicExponent))])
    }
}

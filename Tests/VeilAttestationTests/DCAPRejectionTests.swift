import Crypto
import Foundation
import SwiftASN1
import Testing
import X509
@testable import VeilAttestation

/// Every rejection path of the DCAP verifier, on the real SGX vector with one thing changed.
@Suite struct DCAPRejectionTests {
    let vector = try! Vectors.load("sgx_quote")
    let verifier = DCAPVerifier()

    /// Offsets in a v3 SGX quote.
    enum Offset {
        static let body = 48
        static let signature = 436
        static let attestationKey = 500
        static let qeReport = 564
        static let qeReportSignature = 948
        static let qeAuthData = 1014
    }

    func verify(_ quote: [UInt8], collateral: DCAPCollateral? = nil, at time: Date? = nil) throws -> DCAPResult {
        try verifier.verify(quote: quote, collateral: collateral ?? vector.collateral, at: time ?? vector.time)
    }

    func flipped(_ offset: Int, bit: UInt8 = 0x01) -> [UInt8] {
        var quote = vector.quote
        quote[offset] ^= bit
        return quote
    }

    @Test func theUnchangedVectorVerifies() throws {
        let result = try verify(vector.quote)
        #expect(result.claims.tee == .sgx)
        #expect(result.claims.measurement.count == 32)
        #expect(!result.claims.debug)
        guard case .sgx(let report) = result.quote.body else { Issue.record("not SGX"); return }
        #expect(result.claims.reportData == report.reportData)
    }

    @Test func flippedQuoteSignature() {
        #expect(throws: DCAPError.quoteSignatureInvalid) { try verify(flipped(Offset.signature + 10)) }
    }

    @Test func flippedReportBody() {
        // A bit of MRENCLAVE.
        #expect(throws: DCAPError.quoteSignatureInvalid) { try verify(flipped(Offset.body + 64 + 3)) }
        // A bit of the header.
        #expect(throws: DCAPError.quoteSignatureInvalid) { try verify(flipped(30)) }
    }

    @Test func flippedQEReport() {
        #expect(throws: DCAPError.qeReportSignatureInvalid) { try verify(flipped(Offset.qeReport + 100)) }
    }

    @Test func flippedQEReportSignature() {
        #expect(throws: DCAPError.qeReportSignatureInvalid) { try verify(flipped(Offset.qeReportSignature + 5)) }
    }

    @Test func flippedAttestationKey() {
        #expect(throws: DCAPError.qeReportDataMismatch) { try verify(flipped(Offset.attestationKey + 7)) }
    }

    @Test func flippedQEAuthData() throws {
        let quote = try DCAPQuote(vector.quote)
        try #require(!quote.qeAuthData.isEmpty)
        #expect(throws: DCAPError.qeReportDataMismatch) { try verify(flipped(Offset.qeAuthData)) }
    }

    @Test func flippedPCKLeafCertificate() throws {
        // Re-encode the leaf with one bit of its to-be-signed part flipped; same PEM length.
        var quote = vector.quote
        let begin = Array("-----BEGIN CERTIFICATE-----\n".utf8)
        let end = Array("-----END CERTIFICATE-----".utf8)
        let start = try #require(quote.firstRange(of: begin))
        let stop = try #require(quote[start.upperBound...].firstRange(of: end))
        let base64 = String(decoding: quote[start.upperBound..<stop.lowerBound].filter { $0 != 10 }, as: UTF8.self)
        var der = Array(try #require(Data(base64Encoded: base64)))
        der[200] ^= 0x01
        let reencoded = Array((Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed]) + "\n").utf8)
        try #require(reencoded.count == stop.lowerBound - start.upperBound)
        quote.replaceSubrange(start.upperBound..<stop.lowerBound, with: reencoded)
        let error = try #require(throws: DCAPError.self) { try verify(quote) }
        switch error {
        case .chainUntrusted(let chain, _), .certificateExpired(let chain, _): #expect(chain == "PCK")
        case .malformedCertificate: break
        default: Issue.record("unexpected \(error)")
        }
    }

    @Test func chainToAnotherRootIsUntrusted() throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("Intel SGX Root CA") }
        let impostor = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date(timeIntervalSince1970: 0),
            notValidAfter: Date(timeIntervalSince1970: 4_000_000_000), issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
            issuerPrivateKey: .init(key))
        let error = try #require(throws: DCAPError.self) {
            try DCAPVerifier(trustedRoot: impostor).verify(quote: vector.quote, collateral: vector.collateral, at: vector.time)
        }
        if case .crlInvalid = error {} else if case .chainUntrusted = error {} else { Issue.record("unexpected \(error)") }
    }

    @Test func verificationTimeOutsideTheCollateralWindow() throws {
        let tcbInfo = try JSONSerialization.jsonObject(with: Data(vector.collateral.tcbInfo)) as! [String: Any]
        let issue = try Date(tcbInfo["issueDate"] as! String, strategy: .iso8601)
        let next = try Date(tcbInfo["nextUpdate"] as! String, strategy: .iso8601)
        let before = try #require(throws: DCAPError.self) { try verify(vector.quote, at: issue.addingTimeInterval(-1)) }
        switch before {
        case .collateralNotYetValid, .crlInvalid: break
        default: Issue.record("unexpected \(before)")
        }
        let after = try #require(throws: DCAPError.self) { try verify(vector.quote, at: next.addingTimeInterval(1)) }
        switch after {
        case .collateralExpired, .crlInvalid, .certificateExpired: break
        default: Issue.record("unexpected \(after)")
        }
        // The collateral window alone (CRLs and certificates are valid then): TCB info's own dates.
        let prepared = try verifier.prepare(vector.collateral, at: vector.time)
        #expect(prepared.validUntil <= next)
        #expect(throws: DCAPError.collateralExpired(what: "TCB info", nextUpdate: next)) {
            _ = try DCAPVerifier.window(issue: tcbInfo["issueDate"] as! String, next: tcbInfo["nextUpdate"] as! String, what: "TCB info", at: next.addingTimeInterval(1))
        }
        #expect(throws: DCAPError.collateralNotYetValid(what: "TCB info", issueDate: issue)) {
            _ = try DCAPVerifier.window(issue: tcbInfo["issueDate"] as! String, next: tcbInfo["nextUpdate"] as! String, what: "TCB info", at: issue.addingTimeInterval(-1))
        }
    }

    @Test func tcbInfoNotMatchingItsSignature() throws {
        var collateral = vector.collateral
        let text = String(decoding: collateral.tcbInfo, as: UTF8.self).replacingOccurrences(of: "\"OutOfDate\"", with: "\"UpToDate\"")
        collateral.tcbInfo = Array(text.utf8)
        #expect(collateral.tcbInfo != vector.collateral.tcbInfo)
        #expect(throws: DCAPError.tcbInfoSignatureInvalid) { try verify(vector.quote, collateral: collateral) }
        collateral = vector.collateral
        collateral.tcbInfoSignature[3] ^= 1
        #expect(throws: DCAPError.tcbInfoSignatureInvalid) { try verify(vector.quote, collateral: collateral) }
        collateral = vector.collateral
        collateral.qeIdentitySignature[3] ^= 1
        #expect(throws: DCAPError.qeIdentitySignatureInvalid) { try verify(vector.quote, collateral: collateral) }
    }

    /// Forged and stale at once: the forgery is what is reported, whichever window ran out.
    @Test func aForgedDocumentIsReportedAsForgedEvenWhenStale() throws {
        let tcbInfo = try JSONSerialization.jsonObject(with: Data(vector.collateral.tcbInfo)) as! [String: Any]
        let next = try Date(tcbInfo["nextUpdate"] as! String, strategy: .iso8601)
        var collateral = vector.collateral
        collateral.tcbInfoSignature[3] ^= 1
        // A week past nextUpdate the PCK CRL has expired too (it is checked first).
        #expect(throws: DCAPError.tcbInfoSignatureInvalid) { try verify(vector.quote, collateral: collateral, at: next.addingTimeInterval(7 * 86_400)) }
        collateral = vector.collateral
        collateral.qeIdentitySignature[3] ^= 1
        #expect(throws: DCAPError.qeIdentitySignatureInvalid) { try verify(vector.quote, collateral: collateral, at: next.addingTimeInterval(7 * 86_400)) }
        // Unforged and stale: the date is what is reported.
        let stale = #expect(throws: DCAPError.self) { try verify(vector.quote, at: next.addingTimeInterval(7 * 86_400)) }
        #expect("\(stale.map { "\($0)" } ?? "")".contains("expired"), "\(String(describing: stale))")
    }

    @Test func truncationAtEveryOffsetIsATypedError() {
        for length in 0..<vector.quote.count {
            #expect(throws: DCAPError.self) { try verify(Array(vector.quote.prefix(length))) }
        }
    }

    @Test func trailingGarbageIsRejectedButZeroPaddingIsNot() throws {
        #expect(throws: DCAPError.malformedQuote(.trailingBytes(field: "signature data", count: 1))) { try verify(vector.quote + [0x41]) }
        _ = try verify(vector.quote + [0, 0, 0, 0])
    }
}

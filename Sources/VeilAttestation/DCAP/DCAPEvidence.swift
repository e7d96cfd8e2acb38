import Crypto
import FoundationEssentials
import Glibc
import Synchronization
import VeilCore

/// Evidence format name for a raw Intel DCAP quote (SGX or TDX) in ``Evidence/data``.
public enum DCAPEvidence {
    public static let format = "intel-dcap-quote"
}

/// Where DCAP collateral comes from.
public protocol DCAPCollateralSource: Sendable {
    /// Collateral for `quote` (the FMSPC and TEE type select TCB info and QE identity).
    func collateral(for quote: DCAPQuote) throws -> DCAPCollateral
    /// The time `collateral` is verified at: `now`, unless the source serves a document past
    /// its `nextUpdate` within a stated grace period (then that `nextUpdate`).
    func verificationTime(for collateral: DCAPCollateral, now: Date) -> Date
}

extension DCAPCollateralSource {
    public func verificationTime(for collateral: DCAPCollateral, now: Date) -> Date { now }
}

/// Collateral from files in the shared vectors' JSON layout: one file, or a directory of
/// `*.json` files of which the one whose TCB info matches the quote's TEE and FMSPC is used.
public struct FileDCAPCollateralSource: DCAPCollateralSource {
    let collaterals: [DCAPCollateral]

    public init(path: String) throws {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw DCAPError.malformedCollateral("collateral path \(path) does not exist")
        }
        let files = status.st_mode & S_IFMT == S_IFDIR
            ? try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".json") }.sorted().map { "\(path)/\($0)" }
            : [path]
        collaterals = files.compactMap { file in
            FileManager.default.contents(atPath: file).flatMap { try? DCAPCollateral.parseJSON(Array($0)) }
        }
        guard !collaterals.isEmpty else { throw DCAPError.malformedCollateral("no collateral JSON in \(path)") }
    }

    public func collateral(for quote: DCAPQuote) throws -> DCAPCollateral {
        let tee = quote.header.tee == .sgx ? "SGX" : "TDX"
        let fmspc = (try? DCAPVerifier.certificates(quote.pckChainPEM, "PCK")).flatMap { $0.first }.flatMap(DCAPVerifier.fmspc(of:))
        struct Identity: Decodable { var id: String?; var fmspc: String }
        func fits(_ collateral: DCAPCollateral) -> Bool {
            guard let info = try? JSONDecoder().decode(Identity.self, from: Data(collateral.tcbInfo)) else { return false }
            return (info.id ?? "SGX") == tee && (fmspc == nil || Hex.decode(info.fmspc) == fmspc)
        }
        // Prefer collateral for this TEE and platform (FMSPC); verification names any mismatch.
        guard let chosen = collaterals.first(where: fits) ?? collaterals.first else {
            throw DCAPError.malformedCollateral("no collateral for this quote")
        }
        return chosen
    }
}

/// Verifies DCAP evidence with collateral from a source, reusing prepared collateral (and its
/// cache of verified PCK chains) until the collateral's validity ends.
public final class DCAPEvidenceVerifier: Sendable {
    let verifier: DCAPVerifier
    let source: any DCAPCollateralSource
    let clock: @Sendable () -> Date
    private let prepared = Mutex<[[UInt8]: DCAPVerifier.PreparedCollateral]>([:])

    public init(verifier: DCAPVerifier = DCAPVerifier(), source: any DCAPCollateralSource, clock: @escaping @Sendable () -> Date = Date.init) {
        self.verifier = verifier
        self.source = source
        self.clock = clock
    }

    public func verify(_ quoteBytes: [UInt8]) throws(DCAPError) -> DCAPResult {
        let quote: DCAPQuote
        do {
            quote = try DCAPQuote(quoteBytes)
        } catch {
            throw .malformedQuote(error)
        }
        let collateral: DCAPCollateral
        do {
            collateral = try source.collateral(for: quote)
        } catch let error as DCAPError {
            throw error
        } catch {
            throw .malformedCollateral("\(error)")
        }
        let now = source.verificationTime(for: collateral, now: clock())
        let key = Array(SHA256.hash(data: collateral.tcbInfo + collateral.qeIdentity + collateral.pckCRL + collateral.rootCACRL))
        let cached = prepared.withLock { $0[key] }
        let ready: DCAPVerifier.PreparedCollateral
        if let cached, now >= cached.time, now <= cached.validUntil {
            ready = cached
        } else {
            ready = try verifier.prepare(collateral, at: now)
            prepared.withLock { $0[key] = ready }
        }
        return try verifier.verify(quoteBytes, prepared: ready, at: now)
    }
}

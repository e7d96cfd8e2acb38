import FoundationEssentials
import VeilCore

/// What verifying a DCAP quote needs besides the quote: TCB info, QE identity, their signing
/// chains and signatures, and the two CRLs. The PCK chain travels inside the quote.
///
/// JSON layout (as Intel PCS / PCCS deliver it and the shared vectors store it): keys
/// `tcb_info`, `tcb_info_signature` (hex r‖s), `tcb_info_issuer_chain` (PEM), `qe_identity`,
/// `qe_identity_signature`, `qe_identity_issuer_chain`, `root_ca_crl` (hex DER), `pck_crl`
/// (hex DER), `pck_crl_issuer_chain` (PEM). `tcb_info` and `qe_identity` are the exact JSON
/// bytes Intel signed.
public struct DCAPCollateral: Sendable, Equatable {
    public var tcbInfo: [UInt8]
    public var tcbInfoSignature: [UInt8]
    public var tcbInfoIssuerChain: [UInt8]
    public var qeIdentity: [UInt8]
    public var qeIdentitySignature: [UInt8]
    public var qeIdentityIssuerChain: [UInt8]
    public var rootCACRL: [UInt8]
    public var pckCRL: [UInt8]
    public var pckCRLIssuerChain: [UInt8]

    public init(
        tcbInfo: [UInt8], tcbInfoSignature: [UInt8], tcbInfoIssuerChain: [UInt8], qeIdentity: [UInt8],
        qeIdentitySignature: [UInt8], qeIdentityIssuerChain: [UInt8], rootCACRL: [UInt8], pckCRL: [UInt8], pckCRLIssuerChain: [UInt8]
    ) {
        self.tcbInfo = tcbInfo
        self.tcbInfoSignature = tcbInfoSignature
        self.tcbInfoIssuerChain = tcbInfoIssuerChain
        self.qeIdentity = qeIdentity
        self.qeIdentitySignature = qeIdentitySignature
        self.qeIdentityIssuerChain = qeIdentityIssuerChain
        self.rootCACRL = rootCACRL
        self.pckCRL = pckCRL
        self.pckCRLIssuerChain = pckCRLIssuerChain
    }

    /// Parses the collateral JSON document described above.
    public static func parseJSON(_ bytes: [UInt8]) throws(DCAPError) -> DCAPCollateral {
        guard let object = (try? JSONValue.parse(bytes))?.objectValue else {
            throw .malformedCollateral("collateral is not a JSON object")
        }
        func text(_ key: String) throws(DCAPError) -> [UInt8] {
            guard let value = object[key]?.stringValue else { throw .malformedCollateral("collateral field '\(key)' is missing or not a string") }
            return Array(value.utf8)
        }
        func hex(_ key: String) throws(DCAPError) -> [UInt8] {
            guard let value = object[key]?.stringValue, let bytes = Hex.decode(value) else {
                throw .malformedCollateral("collateral field '\(key)' is missing or not hex")
            }
            return bytes
        }
        return DCAPCollateral(
            tcbInfo: try text("tcb_info"), tcbInfoSignature: try hex("tcb_info_signature"),
            tcbInfoIssuerChain: try text("tcb_info_issuer_chain"), qeIdentity: try text("qe_identity"),
            qeIdentitySignature: try hex("qe_identity_signature"), qeIdentityIssuerChain: try text("qe_identity_issuer_chain"),
            rootCACRL: try hex("root_ca_crl"), pckCRL: try hex("pck_crl"), pckCRLIssuerChain: try text("pck_crl_issuer_chain"))
    }
}

extension DCAPCollateral {
    /// The `nextUpdate` of a DER CRL, or `nil` when it is not a CRL or has none.
    public static func nextUpdate(ofCRL der: [UInt8]) -> Date? {
        (try? RevocationList(derEncoded: der))?.nextUpdate
    }

    /// The `nextUpdate` of a TCB info or QE identity JSON body, or `nil`.
    public static func nextUpdate(ofSignedJSON bytes: [UInt8]) -> Date? {
        struct Dates: Decodable { var nextUpdate: String }
        guard let dates = try? JSONDecoder().decode(Dates.self, from: Data(bytes)) else { return nil }
        return try? Date(dates.nextUpdate, strategy: .iso8601)
    }
}

/// Intel TCB status, ordered from best to worst.
public enum TCBStatus: String, Sendable, Codable, CaseIterable, Comparable {
    case upToDate = "UpToDate"
    case swHardeningNeeded = "SWHardeningNeeded"
    case configurationNeeded = "ConfigurationNeeded"
    case configurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
    case outOfDate = "OutOfDate"
    case outOfDateConfigurationNeeded = "OutOfDateConfigurationNeeded"
    case revoked = "Revoked"

    private var severity: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (lhs: TCBStatus, rhs: TCBStatus) -> Bool { lhs.severity < rhs.severity }
}

/// A TCB level's verdict: status and the advisories that explain it.
public struct TCBVerdict: Sendable, Equatable, Codable {
    public var status: TCBStatus
    public var advisoryIDs: [String]

    /// The platform verdict (`self`) combined with a QE or TDX module verdict as Intel's
    /// library does (`convergeTcbStatusWith…`): an out-of-date QE or module makes an up-to-date
    /// or SW-hardening platform `OutOfDate` and a configuration-needed one
    /// `OutOfDateConfigurationNeeded`; a revoked one revokes; otherwise the platform's status
    /// stands. Advisories of both (first-seen order, no duplicates).
    func converged(with other: TCBVerdict) -> TCBVerdict {
        var ids = advisoryIDs
        for id in other.advisoryIDs where !ids.contains(id) { ids.append(id) }
        let combined: TCBStatus
        switch (other.status, status) {
        case (.revoked, _): combined = .revoked
        case (.outOfDate, .upToDate), (.outOfDate, .swHardeningNeeded): combined = .outOfDate
        case (.outOfDate, .configurationNeeded), (.outOfDate, .configurationAndSWHardeningNeeded): combined = .outOfDateConfigurationNeeded
        default: combined = status
        }
        return TCBVerdict(status: combined, advisoryIDs: ids)
    }
}

/// A TCB level graded by one ISVSVN (QE identity, TDX module identity).
struct IdentityTCBLevel: Decodable, Sendable {
    struct TCB: Decodable, Sendable { var isvsvn: Int }
    var tcb: TCB
    var tcbStatus: String
    var advisoryIDs: [String]?
}

/// The dates every signed Intel collateral document carries.
protocol SignedCollateralDocument: Decodable, Sendable {
    var issueDate: String { get }
    var nextUpdate: String { get }
}

/// Intel TCB info (version 2 or 3), the fields verification uses. Version 2 (SGX only, no
/// `id`) is what Intel still serves for older platforms.
struct TCBInfo: SignedCollateralDocument {
    struct Component: Decodable { var svn: Int }
    struct Level: Decodable {
        /// A level's TCB: version 3 lists components (`sgxtcbcomponents`, `tdxtcbcomponents`);
        /// version 2 names them one by one (`sgxtcbcomp01svn` … `sgxtcbcomp16svn`). Both decode
        /// to the same 16 SGX component SVNs.
        struct TCB: Decodable {
            var sgxtcbcomponents: [Component]?
            var tdxtcbcomponents: [Component]?
            var pcesvn: Int

            private struct Key: CodingKey {
                var stringValue: String
                var intValue: Int? { nil }
                init(stringValue: String) { self.stringValue = stringValue }
                init?(intValue: Int) { nil }
            }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: Key.self)
                pcesvn = try container.decode(Int.self, forKey: Key(stringValue: "pcesvn"))
                tdxtcbcomponents = try container.decodeIfPresent([Component].self, forKey: Key(stringValue: "tdxtcbcomponents"))
                if let listed = try container.decodeIfPresent([Component].self, forKey: Key(stringValue: "sgxtcbcomponents")) {
                    sgxtcbcomponents = listed
                } else {
                    let named = try (1...16).map { index in
                        try container.decodeIfPresent(Int.self, forKey: Key(stringValue: "sgxtcbcomp\(index < 10 ? "0" : "")\(index)svn"))
                    }
                    sgxtcbcomponents = named.allSatisfy { $0 != nil } ? named.map { Component(svn: $0!) } : nil
                }
            }
        }
        var tcb: TCB
        var tcbStatus: String
        var advisoryIDs: [String]?
    }
    struct ModuleIdentity: Decodable {
        var id: String
        var mrsigner: String
        var attributes: String
        var attributesMask: String
        var tcbLevels: [IdentityTCBLevel]
    }
    var id: String?
    var version: Int
    var issueDate: String
    var nextUpdate: String
    var fmspc: String
    var pceId: String
    var tcbLevels: [Level]
    var tdxModuleIdentities: [ModuleIdentity]?
}

/// Intel QE identity (version 2), the fields verification uses.
struct QEIdentity: SignedCollateralDocument {
    var id: String
    var version: Int
    var issueDate: String
    var nextUpdate: String
    var miscselect: String
    var miscselectMask: String
    var attributes: String
    var attributesMask: String
    var mrsigner: String
    var isvprodid: Int
    var tcbLevels: [IdentityTCBLevel]
}

import FoundationEssentials
import VeilCore

/// What identifies the software a TEE runs, beyond its primary measurement: for a TD the RTMRs
/// (firmware configuration, kernel and command line, initrd and what the guest extends) and
/// MRCONFIGID; for an SEV-SNP guest HOST_DATA when the host set it. MRTD alone covers only the
/// TD's firmware — any kernel and program booted from the same TDVF would share it.
///
/// Invariant: built from verified claims (``init(_:)``) or from a replica's own report.
public struct TEEIdentity: Sendable, Equatable, CustomStringConvertible {
    public let tee: TEEKind
    /// MRENCLAVE, MRTD, the SNP launch measurement, or the simulated launch measurement.
    public let measurement: [UInt8]
    /// TDX: RTMR0–3.
    public let rtmrs: [[UInt8]]?
    /// TDX: MRCONFIGID; nil when all zero (not set).
    public let mrConfigID: [UInt8]?
    /// SEV-SNP: HOST_DATA; nil when all zero (not set).
    public let hostData: [UInt8]?

    public init(tee: TEEKind, measurement: [UInt8], rtmrs: [[UInt8]]? = nil, mrConfigID: [UInt8]? = nil, hostData: [UInt8]? = nil) {
        self.tee = tee
        self.measurement = measurement
        self.rtmrs = rtmrs
        self.mrConfigID = mrConfigID.flatMap { $0.allSatisfy { $0 == 0 } ? nil : $0 }
        self.hostData = hostData.flatMap { $0.allSatisfy { $0 == 0 } ? nil : $0 }
    }

    public init(_ claims: Claims) {
        self.init(tee: claims.tee, measurement: claims.measurement, rtmrs: claims.tdx?.rtmrs, mrConfigID: claims.tdx?.mrConfigID, hostData: claims.snp?.hostData)
    }

    /// The form `--expect` takes: `measurement=HEX` and, where present, `rtmr0=…`–`rtmr3=…`,
    /// `mrconfigid=…`, `hostdata=…` (what a replica logs at start).
    public var description: String {
        var fields = ["measurement=\(Hex.encode(measurement))"]
        for (index, rtmr) in (rtmrs ?? []).enumerated() { fields.append("rtmr\(index)=\(Hex.encode(rtmr))") }
        if let mrConfigID { fields.append("mrconfigid=\(Hex.encode(mrConfigID))") }
        if let hostData { fields.append("hostdata=\(Hex.encode(hostData))") }
        return fields.joined(separator: ",")
    }
}

/// An expected coordinator identity, as `--expect` or a policy file gives it: a bare hex
/// measurement, or `measurement=HEX` (alias `mrtd=`, `mrenclave=`) with any of `rtmr0=`–`rtmr3=`,
/// `mrconfigid=`, `hostdata=`, comma-separated. Fields not given are not checked — except
/// HOST_DATA: an identity whose host set it must have it pinned.
public struct IdentityExpectation: Sendable, Equatable, CustomStringConvertible {
    public var measurement: [UInt8]
    public var rtmrs: [Int: [UInt8]] = [:]
    public var mrConfigID: [UInt8]?
    public var hostData: [UInt8]?

    public init(measurement: [UInt8], rtmrs: [Int: [UInt8]] = [:], mrConfigID: [UInt8]? = nil, hostData: [UInt8]? = nil) {
        self.measurement = measurement
        self.rtmrs = rtmrs
        self.mrConfigID = mrConfigID
        self.hostData = hostData
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Parses `text` (see the type's description); measurements are 32 or 48 bytes, `sha256:` allowed.
    public init(parsing text: String) throws(ParseError) {
        func bytes(_ hex: Substring, _ field: String, sizes: Set<Int>) throws(ParseError) -> [UInt8] {
            let trimmed = hex.hasPrefix("sha256:") ? hex.dropFirst("sha256:".count) : hex
            guard let value = Hex.decode(String(trimmed)), sizes.contains(value.count) else {
                throw ParseError(description: "'\(text)': \(field) must be \(sizes.sorted().map(String.init).joined(separator: " or ")) bytes of hex")
            }
            return value
        }
        guard text.contains("=") else {
            self.init(measurement: try bytes(Substring(text), "a measurement", sizes: [32, 48]))
            return
        }
        var measurement: [UInt8]?
        var expectation = IdentityExpectation(measurement: [])
        for field in text.split(separator: ",") {
            let parts = field.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ParseError(description: "'\(text)': '\(field)' is not NAME=HEX") }
            let name = parts[0].lowercased()
            switch name {
            case "measurement", "mrtd", "mrenclave": measurement = try bytes(parts[1], name, sizes: [32, 48])
            case "rtmr0", "rtmr1", "rtmr2", "rtmr3": expectation.rtmrs[Int(String(name.last!))!] = try bytes(parts[1], name, sizes: [48])
            case "mrconfigid": expectation.mrConfigID = try bytes(parts[1], name, sizes: [48])
            case "hostdata": expectation.hostData = try bytes(parts[1], name, sizes: [32])
            default:
                throw ParseError(description: "'\(text)': unknown field '\(name)' (measurement, mrtd, mrenclave, rtmr0-3, mrconfigid, hostdata)")
            }
        }
        guard let measurement else { throw ParseError(description: "'\(text)': measurement=HEX (or mrtd=, mrenclave=) is required") }
        expectation.measurement = measurement
        self = expectation
    }

    /// Whether this pins a TD's software (an RTMR or MRCONFIGID), not only its firmware (MRTD).
    public var pinsTDSoftware: Bool { !rtmrs.isEmpty || mrConfigID != nil }

    /// Why `identity` is not this expectation (the first difference), or nil when it is.
    public func mismatch(_ identity: TEEIdentity) -> String? {
        guard identity.measurement == measurement else { return "measurement \(Hex.encode(identity.measurement)), expected \(Hex.encode(measurement))" }
        for (index, expected) in rtmrs.sorted(by: { $0.key < $1.key }) {
            guard let actual = identity.rtmrs?[safe: index] else { return "RTMR\(index) expected, but the evidence has no RTMRs (not a TD)" }
            guard actual == expected else { return "RTMR\(index) is \(Hex.encode(actual)), expected \(Hex.encode(expected))" }
        }
        if let mrConfigID, identity.mrConfigID != mrConfigID {
            return "MRCONFIGID is \(identity.mrConfigID.map(Hex.encode) ?? "not set"), expected \(Hex.encode(mrConfigID))"
        }
        if let actual = identity.hostData, hostData == nil {
            return "HOST_DATA is set (\(Hex.encode(actual))) but not pinned: add hostdata=\(Hex.encode(actual)) if the host's data is expected"
        }
        if let hostData, identity.hostData != hostData {
            return "HOST_DATA is \(identity.hostData.map(Hex.encode) ?? "not set"), expected \(Hex.encode(hostData))"
        }
        return nil
    }

    public var description: String {
        var fields = ["measurement=\(Hex.encode(measurement))"]
        for (index, rtmr) in rtmrs.sorted(by: { $0.key < $1.key }) { fields.append("rtmr\(index)=\(Hex.encode(rtmr))") }
        if let mrConfigID { fields.append("mrconfigid=\(Hex.encode(mrConfigID))") }
        if let hostData { fields.append("hostdata=\(Hex.encode(hostData))") }
        return fields.joined(separator: ",")
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

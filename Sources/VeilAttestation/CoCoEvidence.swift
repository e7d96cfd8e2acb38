import FoundationEssentials
import VeilCore

/// The evidence Confidential Containers' attesters produce (guest-components' `attester`
/// crate, as its KBS client and its guest API hand it out), turned into Veil's own formats so
/// Veil's verifiers check it:
///
/// - SNP: `{"attestation_report": {…serde of the sev crate's report…}, "cert_chain": [{"cert_type":
///   "VCEK"/"VLEK"/"ASK"/"ARK", "data": [DER bytes]}]}` → `amd-snp-report`, the 1184-byte report
///   rebuilt field by field (the signature is checked over exactly what the firmware signed);
/// - TDX `{"quote": BASE64, "cc_eventlog": …}` and SGX `{"quote": BASE64}` → `intel-dcap-quote`
///   (a TD's event log is not replayed: its RTMRs are compared with the package).
public enum CoCoEvidence {
    public enum Kind: String, Sendable { case snp, tdx, sgx }

    /// The kind an attester's evidence has, by its members (the guest API does not name it).
    public static func kind(of evidence: JSONValue) -> Kind? {
        if evidence["attestation_report"] != nil { return .snp }
        if evidence["quote"] != nil { return evidence["cc_eventlog"] != nil ? .tdx : .sgx }
        return nil
    }

    public static func evidence(_ primary: JSONValue, kind: Kind) throws(ProviderError) -> Evidence {
        switch kind {
        case .snp: return try snp(primary)
        case .tdx, .sgx:
            guard let text = primary["quote"]?.stringValue, let quote = Data(base64Encoded: text) else {
                throw .malformed("\(kind.rawValue) evidence needs \"quote\": the base64 DCAP quote")
            }
            return Evidence(format: DCAPEvidence.format, data: Array(quote))
        }
    }

    static func snp(_ primary: JSONValue) throws(ProviderError) -> Evidence {
        guard let report = primary["attestation_report"] else { throw .malformed("snp evidence needs \"attestation_report\"") }
        let bytes: [UInt8]
        do {
            bytes = try SNPReportSerde.binary(report)
        } catch {
            throw .malformed("snp attestation_report: \(error.reason)")
        }
        var certificates: [String: [UInt8]] = [:]
        for (index, entry) in (primary["cert_chain"]?.arrayValue ?? []).enumerated() {
            guard let type = entry["cert_type"]?.stringValue, let data = entry["data"] else {
                throw .malformed("snp cert_chain[\(index)] needs cert_type and data")
            }
            do {
                certificates[type] = try SNPReportSerde.byteList(data, count: nil, field: "cert_chain[\(index)].data")
            } catch {
                throw .malformed(error.reason)
            }
        }
        // Without a VCEK/VLEK, or without the ASK and ARK, verifiers fetch them from AMD KDS;
        // whatever is used is checked against the compiled-in ARK.
        return SNPEvidence.make(report: bytes, endorsementKey: certificates["VCEK"] ?? certificates["VLEK"], ask: certificates["ASK"], ark: certificates["ARK"])
    }
}

/// The sev crate's serde form of an SNP attestation report (byte arrays as JSON lists of
/// integers, TCB versions as objects) rebuilt into the report's 1184 bytes, so the signature
/// is checked over exactly what the firmware signed.
package enum SNPReportSerde {
    package struct Problem: Error {
        package let reason: String
    }

    /// The report's fields at their offsets (AMD SEV-SNP ABI, ATTESTATION_REPORT, version 3).
    package static func binary(_ report: JSONValue) throws(Problem) -> [UInt8] {
        var out = ReportWriter(report: report)
        try out.integer("version", bytes: 4, at: 0x00)
        try out.integer("guest_svn", bytes: 4, at: 0x04)
        try out.integer("policy", bytes: 8, at: 0x08)
        try out.list("family_id", 16, at: 0x10)
        try out.list("image_id", 16, at: 0x20)
        try out.integer("vmpl", bytes: 4, at: 0x30)
        try out.integer("sig_algo", bytes: 4, at: 0x34)
        try out.tcb("current_tcb", at: 0x38)
        try out.integer("plat_info", bytes: 8, at: 0x40)
        try out.integer("key_info", bytes: 4, at: 0x48)
        try out.list("report_data", 64, at: 0x50)
        try out.list("measurement", 48, at: 0x90)
        try out.list("host_data", 32, at: 0xC0)
        try out.list("id_key_digest", 48, at: 0xE0)
        try out.list("author_key_digest", 48, at: 0x110)
        try out.list("report_id", 32, at: 0x140)
        try out.list("report_id_ma", 32, at: 0x160)
        try out.tcb("reported_tcb", at: 0x180)
        if report["cpuid_fam_id"] != nil {
            try out.integer("cpuid_fam_id", bytes: 1, at: 0x188)
            try out.integer("cpuid_mod_id", bytes: 1, at: 0x189)
            try out.integer("cpuid_step", bytes: 1, at: 0x18A)
        }
        try out.list("chip_id", 64, at: 0x1A0)
        try out.tcb("committed_tcb", at: 0x1E0)
        try out.firmware("current", at: 0x1E8)
        try out.firmware("committed", at: 0x1EC)
        try out.tcb("launch_tcb", at: 0x1F0)
        guard let signature = report["signature"], let r = signature["r"], let s = signature["s"] else {
            throw Problem(reason: "signature needs r and s")
        }
        out.put(try byteList(r, count: 72, field: "signature.r"), at: SNPReport.signedLength)
        out.put(try byteList(s, count: 72, field: "signature.s"), at: SNPReport.signedLength + 72)
        return out.bytes
    }

    /// Little-endian fields of a serde report written into the 1184 bytes.
    struct ReportWriter {
        let report: JSONValue
        var bytes = [UInt8](repeating: 0, count: SNPReport.size)

        mutating func put(_ field: [UInt8], at offset: Int) { bytes.replaceSubrange(offset..<offset + field.count, with: field) }

        mutating func integer(_ name: String, bytes count: Int, at offset: Int) throws(Problem) {
            guard let value = report[name]?.numberValue, value >= 0, value == value.rounded(), value < 0x1p64 else {
                throw Problem(reason: "\(name) must be a non-negative integer")
            }
            let raw = UInt64(value)
            guard count == 8 || raw >> (8 * UInt64(count)) == 0 else { throw Problem(reason: "\(name) does not fit in \(count) bytes") }
            put((0..<count).map { UInt8(truncatingIfNeeded: raw >> (8 * UInt64($0))) }, at: offset)
        }

        mutating func list(_ name: String, _ count: Int, at offset: Int) throws(Problem) {
            guard let value = report[name] else { throw Problem(reason: "\(name) is missing") }
            put(try SNPReportSerde.byteList(value, count: count, field: name), at: offset)
        }

        /// A TCB version object (`fmc` present only on Turin).
        mutating func tcb(_ name: String, at offset: Int) throws(Problem) {
            guard let fields = report[name] else { throw Problem(reason: "\(name) is missing") }
            func part(_ key: String) throws(Problem) -> UInt8? {
                guard let value = fields[key], value != .null else { return nil }
                guard let number = value.numberValue, number >= 0, number <= 255, number == number.rounded() else {
                    throw Problem(reason: "\(name).\(key) must be a byte")
                }
                return UInt8(number)
            }
            guard let bootloader = try part("bootloader"), let tee = try part("tee"), let snp = try part("snp"), let microcode = try part("microcode") else {
                throw Problem(reason: "\(name) needs bootloader, tee, snp and microcode")
            }
            let version = SNPReport.TCBVersion(bootloader: bootloader, tee: tee, snp: snp, microcode: microcode, fmc: try part("fmc"))
            put((0..<8).map { UInt8(truncatingIfNeeded: version.raw >> (8 * UInt64($0))) }, at: offset)
        }

        /// A firmware version `{major, minor, build}`, stored build first.
        mutating func firmware(_ name: String, at offset: Int) throws(Problem) {
            guard let fields = report[name], let major = fields["major"]?.numberValue, let minor = fields["minor"]?.numberValue,
                let build = fields["build"]?.numberValue, [major, minor, build].allSatisfy({ (0...255).contains($0) && $0 == $0.rounded() })
            else { throw Problem(reason: "\(name) needs major, minor and build bytes") }
            put([UInt8(build), UInt8(minor), UInt8(major)], at: offset)
        }
    }

    /// A JSON list of integers 0…255 (`count` of them when given).
    package static func byteList(_ value: JSONValue, count: Int?, field: String) throws(Problem) -> [UInt8] {
        guard let items = value.arrayValue, count.map({ items.count == $0 }) ?? true else {
            throw Problem(reason: "\(field) must be a list of \(count.map(String.init) ?? "") bytes")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(items.count)
        for item in items {
            guard let number = item.numberValue, number >= 0, number <= 255, number == number.rounded() else {
                throw Problem(reason: "\(field) holds a value that is not a byte")
            }
            bytes.append(UInt8(number))
        }
        return bytes
    }
}

import VeilAttestation
import VeilCore

extension ManifestParser {
    /// `MinimumTCB` of an snp package: required, either the lowest firmware TCB to accept —
    /// `{"Bootloader", "TEE", "SNP", "Microcode"}`, plus `"FMC"` for Turin — or the string
    /// `"any"`, which ``Manifest/coverageWarnings`` then reports.
    mutating func minimumTCB(_ value: JSONValue?, _ path: String) -> MinimumTCB? {
        guard let value else {
            problem(path, #"required for snp packages: the lowest firmware TCB to accept ({"Bootloader", "TEE", "SNP", "Microcode"}, "#
                + #"plus "FMC" on Turin), or "any" to accept every firmware on purpose"#)
            return nil
        }
        if case .string(let text) = value {
            guard text == "any" else {
                problem(path, #"must be an object of component versions or the string "any""#)
                return nil
            }
            return .any
        }
        let names = ["Bootloader", "TEE", "SNP", "Microcode"]
        guard let fields = object(value, path, allowed: Set(names + ["FMC"])) else { return nil }
        let parts = names.map { name -> UInt8? in
            if fields[name] == nil { problem("\(path).\(name)", "required (0-255)") }
            return integer(fields[name], "\(path).\(name)", in: 0...255).map(UInt8.init)
        }
        let fmc = integer(fields["FMC"], "\(path).FMC", in: 0...255).map(UInt8.init)
        guard let bootloader = parts[0], let tee = parts[1], let snp = parts[2], let microcode = parts[3] else { return nil }
        return .atLeast(SNPReport.TCBVersion(bootloader: bootloader, tee: tee, snp: snp, microcode: microcode, fmc: fmc))
    }
}

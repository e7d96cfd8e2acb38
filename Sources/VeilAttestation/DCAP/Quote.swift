/// A parsed Intel DCAP quote (SGX v3/v4/v5, TDX v4/v5), ECDSA P-256 attestation key.
///
/// Layouts follow Intel's "SGX ECDSA Quote Library API" (v3) and "TDX DCAP Quoting Library
/// API" (v4, v5). Parsing is strict: every declared length must match exactly, and only zero
/// padding (fixed-size TDX quote buffers) may follow the signature data.
public struct DCAPQuote: Sendable, Equatable {
    public enum TEE: UInt32, Sendable { case sgx = 0x00, tdx = 0x81 }

    public struct Header: Sendable, Equatable {
        public var version: UInt16
        public var attestationKeyType: UInt16
        public var tee: TEE
        public var qeSVN: UInt16
        public var pceSVN: UInt16
        public var qeVendorID: [UInt8]
        public var userData: [UInt8]
    }

    /// An SGX enclave report body (384 bytes); also the layout of the QE report.
    public struct EnclaveReport: Sendable, Equatable {
        public static let size = 384
        public var cpuSVN: [UInt8]
        public var miscSelect: UInt32
        public var attributes: [UInt8]
        public var mrEnclave: [UInt8]
        public var mrSigner: [UInt8]
        public var isvProdID: UInt16
        public var isvSVN: UInt16
        public var reportData: [UInt8]
        /// Debug enclave: ATTRIBUTES.DEBUG (bit 1 of the first byte).
        public var debug: Bool { attributes[0] & 0x02 != 0 }

        init(_ bytes: [UInt8]) throws(QuoteParseError) {
            var reader = ByteReader(bytes)
            cpuSVN = try reader.read(16, "report.cpusvn")
            miscSelect = try reader.u32("report.miscselect")
            _ = try reader.read(28, "report.reserved1")
            attributes = try reader.read(16, "report.attributes")
            mrEnclave = try reader.read(32, "report.mrenclave")
            _ = try reader.read(32, "report.reserved2")
            mrSigner = try reader.read(32, "report.mrsigner")
            _ = try reader.read(96, "report.reserved3")
            isvProdID = try reader.u16("report.isvprodid")
            isvSVN = try reader.u16("report.isvsvn")
            _ = try reader.read(60, "report.reserved4")
            reportData = try reader.read(64, "report.reportdata")
        }
    }

    /// A TDX TD report body: TDX 1.0 (584 bytes) or, with the two trailing fields, TDX 1.5 (648).
    public struct TDReport: Sendable, Equatable {
        public static let size10 = 584
        public static let size15 = 648
        public var teeTCBSVN: [UInt8]
        public var mrSeam: [UInt8]
        public var mrSignerSeam: [UInt8]
        public var seamAttributes: [UInt8]
        public var tdAttributes: [UInt8]
        public var xfam: [UInt8]
        public var mrTD: [UInt8]
        public var mrConfigID: [UInt8]
        public var mrOwner: [UInt8]
        public var mrOwnerConfig: [UInt8]
        public var rtmrs: [[UInt8]]
        public var reportData: [UInt8]
        /// TDX 1.5 only.
        public var teeTCBSVN2: [UInt8]?
        public var mrServiceTD: [UInt8]?
        /// TUD.DEBUG: bit 0 of TD attributes.
        public var debug: Bool { tdAttributes[0] & 0x01 != 0 }

        init(_ bytes: [UInt8]) throws(QuoteParseError) {
            var reader = ByteReader(bytes)
            teeTCBSVN = try reader.read(16, "td.tee_tcb_svn")
            mrSeam = try reader.read(48, "td.mrseam")
            mrSignerSeam = try reader.read(48, "td.mrsignerseam")
            seamAttributes = try reader.read(8, "td.seam_attributes")
            tdAttributes = try reader.read(8, "td.td_attributes")
            xfam = try reader.read(8, "td.xfam")
            mrTD = try reader.read(48, "td.mrtd")
            mrConfigID = try reader.read(48, "td.mrconfigid")
            mrOwner = try reader.read(48, "td.mrowner")
            mrOwnerConfig = try reader.read(48, "td.mrownerconfig")
            rtmrs = try (0..<4).map { (index: Int) throws(QuoteParseError) -> [UInt8] in try reader.read(48, "td.rtmr\(index)") }
            reportData = try reader.read(64, "td.reportdata")
            if bytes.count == Self.size15 {
                teeTCBSVN2 = try reader.read(16, "td.tee_tcb_svn2")
                mrServiceTD = try reader.read(48, "td.mrservicetd")
            }
        }
    }

    public enum Body: Sendable, Equatable {
        case sgx(EnclaveReport)
        case td(TDReport)

        public var reportData: [UInt8] {
            switch self {
            case .sgx(let report): return report.reportData
            case .td(let report): return report.reportData
            }
        }
    }

    public var header: Header
    public var body: Body
    /// ECDSA P-256 signature (r ‖ s) over `bytes[0..<signedLength]` by the attestation key.
    public var signature: [UInt8]
    /// Raw P-256 public key (x ‖ y).
    public var attestationKey: [UInt8]
    /// Raw QE report bytes (what the PCK key signed) and their parsed form.
    public var qeReportBytes: [UInt8]
    public var qeReport: EnclaveReport
    public var qeReportSignature: [UInt8]
    public var qeAuthData: [UInt8]
    /// PEM text of the PCK certificate chain (certification data type 5).
    public var pckChainPEM: [UInt8]
    /// How many leading bytes of the quote the attestation key signed.
    public var signedLength: Int

    static let attestationKeyTypeECDSAP256: UInt16 = 2
    static let certificationDataPCKChain: UInt16 = 5
    static let certificationDataQEReport: UInt16 = 6

    /// Parses `bytes`; any truncation, length mismatch or trailing byte is a ``QuoteParseError``.
    public init(_ bytes: [UInt8]) throws(QuoteParseError) {
        var reader = ByteReader(bytes)
        header = try Self.header(&reader)
        body = try Self.body(&reader, header: header)
        signedLength = reader.offset

        let signatureDataLength = Int(try reader.u32("signature_data_len"))
        // TDX quote buffers are fixed-size, so zero padding may follow; anything else may not.
        guard signatureDataLength <= reader.remaining else {
            throw .truncated(field: "signature data", offset: reader.offset, needed: signatureDataLength, available: reader.remaining)
        }
        let end = reader.offset + signatureDataLength
        if let garbage = bytes[end...].firstIndex(where: { $0 != 0 }) {
            throw .trailingBytes(field: "signature data", count: bytes.count - garbage)
        }
        reader = ByteReader(Array(bytes[..<end]), offset: reader.offset)
        signature = try reader.read(64, "signature")
        attestationKey = try reader.read(64, "attestation_key")

        var qe = reader
        if header.version >= 4 {
            let type = try reader.u16("certification_data.type")
            guard type == Self.certificationDataQEReport else { throw .unsupportedCertificationDataType(type) }
            let size = Int(try reader.u32("certification_data.size"))
            guard size == reader.remaining else { throw .lengthMismatch(field: "QE report certification data", declared: size, actual: reader.remaining) }
            qe = ByteReader(try reader.read(size, "certification_data"))
        }
        qeReportBytes = try qe.read(EnclaveReport.size, "qe_report")
        qeReport = try EnclaveReport(qeReportBytes)
        qeReportSignature = try qe.read(64, "qe_report_signature")
        let authLength = Int(try qe.u16("qe_auth_data.size"))
        qeAuthData = try qe.read(authLength, "qe_auth_data")
        let certType = try qe.u16("pck_certification_data.type")
        guard certType == Self.certificationDataPCKChain else { throw .unsupportedCertificationDataType(certType) }
        let certSize = Int(try qe.u32("pck_certification_data.size"))
        guard certSize == qe.remaining else { throw .lengthMismatch(field: "PCK certification data", declared: certSize, actual: qe.remaining) }
        pckChainPEM = try qe.read(certSize, "pck_certification_data")
    }

    private static func header(_ reader: inout ByteReader) throws(QuoteParseError) -> Header {
        let version = try reader.u16("header.version")
        guard (3...5).contains(version) else { throw .unsupportedVersion(version) }
        let keyType = try reader.u16("header.att_key_type")
        let teeRaw = try reader.u32("header.tee_type")
        let qeSVN = try reader.u16("header.qe_svn")
        let pceSVN = try reader.u16("header.pce_svn")
        let vendor = try reader.read(16, "header.qe_vendor_id")
        let userData = try reader.read(20, "header.user_data")
        // v3 has no TEE type field (those bytes are reserved): it is always SGX.
        let tee: TEE
        if version == 3 {
            tee = .sgx
        } else {
            guard let parsed = TEE(rawValue: teeRaw) else { throw .unsupportedTEEType(teeRaw) }
            tee = parsed
        }
        guard keyType == Self.attestationKeyTypeECDSAP256 else { throw .unsupportedAttestationKeyType(keyType) }
        return Header(version: version, attestationKeyType: keyType, tee: tee, qeSVN: qeSVN, pceSVN: pceSVN, qeVendorID: vendor, userData: userData)
    }

    /// The report body: typed and sized in v5, implied by the TEE before.
    private static func body(_ reader: inout ByteReader, header: Header) throws(QuoteParseError) -> Body {
        let tee = header.tee
        guard header.version == 5 else {
            if tee == .sgx { return .sgx(try EnclaveReport(try reader.read(EnclaveReport.size, "body"))) }
            return .td(try TDReport(try reader.read(TDReport.size10, "body")))
        }
        let bodyType = try reader.u16("body.type")
        let bodySize = try reader.u32("body.size")
        let expected: Int
        switch (bodyType, tee) {
        case (1, .sgx): expected = EnclaveReport.size
        case (2, .tdx): expected = TDReport.size10
        case (3, .tdx): expected = TDReport.size15
        default: throw .unsupportedBodyType(bodyType)
        }
        guard Int(bodySize) == expected else { throw .bodySizeMismatch(expected: expected, declared: bodySize) }
        let raw = try reader.read(expected, "body")
        return tee == .sgx ? .sgx(try EnclaveReport(raw)) : .td(try TDReport(raw))
    }
}

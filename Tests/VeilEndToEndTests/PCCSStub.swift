import Foundation
import Testing

/// `Tests/Scripts/pcs_stub.py` on loopback: Intel PCS v4 paths over HTTPS with a certificate of
/// its own CA (as a PCCS is usually installed), serving one real collateral vector.
struct PCCSStub {
    /// The stub's CA certificate (PEM), for `--collateral-ca`.
    let ca: String
    let cert: String
    let key: String

    /// Makes the CA and a server certificate for 127.0.0.1 in `scratch`, valid for two days or,
    /// with `since` (libfaketime's `YYYY-MM-DD hh:mm:ss`), from then until after today.
    init(scratch: Scratch, since: String? = nil) async throws {
        let openssl = which("openssl") ?? "/usr/bin/openssl"
        let days = since == nil ? "2" : "1500"
        let clock = since.map { ["LD_PRELOAD": CollateralServingTests.faketime, "FAKETIME": $0] } ?? [:]
        let (ca, caKey, cert, key, csr) = (scratch.path + "/pccs-ca.pem", scratch.path + "/pccs-ca-key.pem", scratch.path + "/pccs.pem", scratch.path + "/pccs-key.pem", scratch.path + "/pccs.csr")
        for arguments in [
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey, "-out", ca, "-subj", "/CN=PCCS test CA", "-days", days],
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", days,
             "-extfile", try scratch.write("subjectAltName=IP:127.0.0.1\n", to: "san.cnf")],
        ] {
            let made = try await run(openssl, arguments, environment: clock, scratch: scratch)
            try #require(made.status == 0, "\(made.stderr)")
        }
        (self.ca, self.cert, self.key) = (ca, cert, key)
    }

    /// Starts a stub serving `collateral` (a vector's JSON file); its URL. Stop it with `kill9()`.
    func start(collateral: String, tamper: Bool = false, scratch: Scratch) async throws -> (Spawned, String) {
        let port = freePort()
        let process = try Spawned(
            which("python3") ?? "/usr/bin/python3",
            [repositoryRoot + "/Tests/Scripts/pcs_stub.py", "\(port)", "--collateral", collateral, "--cert", cert, "--key", key]
                + (tamper ? ["--tamper-signature"] : []), scratch: scratch)
        try #require(await eventually(within: 20) { isListening(port: port) || !process.isRunning } && isListening(port: port), "\(process.stderr)")
        return (process, "https://127.0.0.1:\(port)")
    }
}

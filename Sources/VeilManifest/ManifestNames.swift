import Glibc

/// Which file paths a manifest may name: absolute, normalized, no `..`.
public enum FilePathRule {
    /// Why `path` is not acceptable, or `nil`.
    public static func problem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "file paths must be absolute" }
        guard !path.hasSuffix("/") else { return "file path names a directory" }
        guard !path.contains("\0") else { return "file path contains NUL" }
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if components.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) {
            return "file path must be normalized (no '.', '..' or '//')"
        }
        return nil
    }
}

/// Which names a manifest may give services, secrets and certificate secrets' DNS names.
///
/// A service name becomes its activation certificate's DNS name and common name, so it must be
/// a lowercase DNS name, never an IP address or `localhost` (a certificate for those would be
/// accepted by any local client of another service). Secret names are referenced in templates
/// (`.Secrets.NAME`) and URLs, so they are identifiers.
public enum NameRule {
    public static func serviceNameProblem(_ name: String) -> String? {
        if let problem = dnsNameProblem(name, wildcard: false) { return "service name: \(problem)" }
        if name != name.lowercased() {
            return "service names are lowercase (they become certificate DNS names)"
        }
        if name == "localhost" || name.hasSuffix(".localhost") { return "service name '\(name)' is reserved for the local host" }
        return nil
    }

    public static func secretNameProblem(_ name: String) -> String? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        guard !name.isEmpty, name.count <= 128, name.allSatisfy(allowed.contains) else {
            return "secret names are 1 to 128 letters, digits, '_' or '-' (they appear in templates as .Secrets.NAME)"
        }
        return nil
    }

    /// Why `name` is not a DNS name (RFC 1123 labels; `*.` first label when `wildcard`).
    public static func dnsNameProblem(_ name: String, wildcard: Bool) -> String? {
        if IPAddress.bytes(name) != nil { return "'\(name)' is an IP address, not a DNS name" }
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if wildcard, labels.first == "*", labels.count > 2 { labels.removeFirst() }
        guard !name.isEmpty, name.utf8.count <= 253, !labels.isEmpty else { return "'\(name)' is not a DNS name (1 to 253 characters)" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.allSatisfy(allowed.contains), label.first != "-", label.last != "-" else {
                return "'\(name)' is not a DNS name (labels of letters, digits and inner '-', 1 to 63 characters)"
            }
        }
        if labels.last!.allSatisfy(\.isNumber) { return "'\(name)' is not a DNS name (the last label is numeric)" }
        return nil
    }
}

/// Textual IP address parsing via `inet_pton`.
public enum IPAddress {
    public static func bytes(_ text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &v6) == 1 { return v6 }
        return nil
    }
}

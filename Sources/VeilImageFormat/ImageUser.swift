import FoundationEssentials

/// An image's `User` (`uid[:gid]`, or names looked up in the image's own /etc/passwd and
/// /etc/group) resolved to numeric ids, with the user's supplementary groups.
public struct ImageUser: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    public static let root = ImageUser(uid: 0, gid: 0, groups: [])

    /// Resolves `text` against the files of the root filesystem at `root` ("/" inside the
    /// container). Links out of `root` are not followed.
    public static func resolve(_ text: String, root: String) throws -> ImageUser {
        if text.isEmpty { return .root }
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let passwd = try? table("passwd", root: root)
        let uid: UInt32
        var primary: UInt32?
        if let number = UInt32(parts[0]) {
            uid = number
            primary = passwd?.first { $0.count > 3 && UInt32($0[2]) == number }.flatMap { UInt32($0[3]) }
        } else {
            guard let passwd else { throw ImageFormatError.user("user '\(parts[0])': the image has no readable /etc/passwd") }
            guard let entry = passwd.first(where: { $0.count > 3 && $0[0] == parts[0] }), let number = UInt32(entry[2]) else {
                throw ImageFormatError.user("user '\(parts[0])' is not in the image's /etc/passwd")
            }
            uid = number
            primary = UInt32(entry[3])
        }
        let group = try? table("group", root: root)
        var gid = primary ?? 0
        if parts.count > 1 {
            if let number = UInt32(parts[1]) {
                gid = number
            } else {
                guard let entry = group?.first(where: { $0.count > 2 && $0[0] == parts[1] }), let number = UInt32(entry[2]) else {
                    throw ImageFormatError.user("group '\(parts[1])' is not in the image's /etc/group")
                }
                gid = number
            }
        }
        let name = passwd?.first { $0.count > 2 && UInt32($0[2]) == uid }?[0]
        let groups = name.map { name in
            (group ?? []).filter { $0.count > 3 && $0[3].split(separator: ",").contains(Substring(name)) }.compactMap { UInt32($0[2]) }
        } ?? []
        return ImageUser(uid: uid, gid: gid, groups: Array(Set(groups + [gid])).sorted())
    }

    private static func table(_ file: String, root: String) throws -> [[String]] {
        let path = (root == "/" ? "" : root) + "/etc/\(file)"
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard root == "/" || resolved.hasPrefix(root + "/"), let data = FileManager.default.contents(atPath: resolved) else {
            throw ImageFormatError.user("the image has no readable /etc/\(file)")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map {
            $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }
}

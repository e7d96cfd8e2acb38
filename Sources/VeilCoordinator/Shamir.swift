import Crypto

/// Shamir secret sharing over GF(2⁸) (the AES field, polynomial x⁸+x⁴+x³+x+1), byte by byte:
/// any `threshold` shares rebuild the secret, fewer reveal nothing about it.
enum Shamir {
    struct Share: Equatable, Sendable {
        /// The evaluation point, 1...255 (0 would be the secret itself).
        var x: UInt8
        var y: [UInt8]
        var bytes: [UInt8] { [x] + y }

        init(x: UInt8, y: [UInt8]) {
            self.x = x
            self.y = y
        }

        init?(bytes: [UInt8]) {
            guard bytes.count >= 2, bytes[0] != 0 else { return nil }
            x = bytes[0]
            y = Array(bytes.dropFirst())
        }
    }

    /// Splits `secret` into `count` shares, any `threshold` of which rebuild it.
    static func split(_ secret: [UInt8], threshold: Int, count: Int) -> [Share] {
        precondition(threshold >= 1 && threshold <= count && count <= 255)
        // One random polynomial of degree threshold-1 per byte, constant term = the byte.
        let coefficients = (0..<secret.count).map { index in
            [secret[index]] + SymmetricKey(size: .init(bitCount: 8 * max(1, threshold - 1))).withUnsafeBytes { Array($0.prefix(threshold - 1)) }
        }
        return (1...count).map { point in
            let x = UInt8(point)
            return Share(x: x, y: coefficients.map { polynomial in
                // Horner's rule.
                polynomial.reversed().reduce(0) { multiply($0, x) ^ $1 }
            })
        }
    }

    /// Lagrange interpolation at 0. Shares must have distinct points and equal lengths.
    static func combine(_ shares: [Share]) -> [UInt8]? {
        guard let length = shares.first?.y.count, shares.allSatisfy({ $0.y.count == length }),
            Set(shares.map(\.x)).count == shares.count
        else { return nil }
        var secret = [UInt8](repeating: 0, count: length)
        for (i, share) in shares.enumerated() {
            // Basis polynomial value at 0: Π x_j / (x_j - x_i), subtraction being XOR.
            var basis: UInt8 = 1
            for (j, other) in shares.enumerated() where j != i {
                basis = multiply(basis, divide(other.x, other.x ^ share.x))
            }
            for index in 0..<length { secret[index] ^= multiply(share.y[index], basis) }
        }
        return secret
    }

    static let tables: (exp: [UInt8], log: [UInt8]) = {
        var exp = [UInt8](repeating: 0, count: 510)
        var log = [UInt8](repeating: 0, count: 256)
        var value: UInt16 = 1
        for power in 0..<255 {
            exp[power] = UInt8(value)
            log[Int(value)] = UInt8(power)
            // Multiply by the generator 3: value·2 ⊕ value, reduced by the AES polynomial.
            var doubled = value << 1
            if doubled & 0x100 != 0 { doubled ^= 0x11b }
            value = doubled ^ value
        }
        for power in 255..<510 { exp[power] = exp[power - 255] }
        return (exp, log)
    }()

    static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        guard a != 0, b != 0 else { return 0 }
        return tables.exp[Int(tables.log[Int(a)]) + Int(tables.log[Int(b)])]
    }

    static func divide(_ a: UInt8, _ b: UInt8) -> UInt8 {
        precondition(b != 0)
        guard a != 0 else { return 0 }
        return tables.exp[Int(tables.log[Int(a)]) + 255 - Int(tables.log[Int(b)])]
    }
}

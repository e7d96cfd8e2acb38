import Synchronization

/// One result slot per parallel job; ``values()`` throws the lowest-numbered job's error.
package final class ParallelResults<Value: Sendable>: Sendable {
    private let slots: Mutex<[Result<Value, any Error>?]>

    package init(count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }

    package func set(_ index: Int, _ body: () throws -> Value) {
        let result = Result { try body() }
        slots.withLock { $0[index] = result }
    }

    package func values() throws -> [Value] {
        try slots.withLock { $0 }.map { try $0!.get() }
    }
}

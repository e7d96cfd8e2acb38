import Dispatch
import Glibc

/// Reads `upstream` on a thread of its own, `depth` chunks ahead of the reader, so that the
/// work behind `upstream` (reading the blob, hashing it, copying it, inflating it) runs on one
/// core while the reader's (hashing the tar stream, parsing it, hashing file contents) runs on
/// another. Bytes, order and errors are exactly `upstream`'s.
///
/// Invariant: `upstream` is touched only by the producer thread until ``stop()`` (or the end
/// of the stream) has joined it; afterwards the caller may use it again. The producer holds
/// only the shared ``Chunks``, never the stream, so a reader that drops the stream early
/// runs `deinit`, which stops and joins the producer.
final class ReadAheadStream: ByteStream {
    /// What producer and reader share; each slot is owned by one side at a time, handed over
    /// through the semaphores (which order the memory accesses).
    private final class Chunks: @unchecked Sendable {
        let upstream: any ByteStream
        let chunkSize: Int
        let depth: Int
        /// `depth` slots of `chunkSize` bytes. Raw memory, not Swift arrays: the two threads
        /// write and read different slots at once, which copy-on-write storage would not allow.
        let storage: UnsafeMutableRawBufferPointer
        let lengths: UnsafeMutableBufferPointer<Int>
        var failure: (any Error)?
        var cancelled = false
        /// Signalled per chunk filled (or at the end); waited for by the reader.
        let filled = DispatchSemaphore(value: 0)
        /// Signalled per chunk the reader handed back; waited for by the producer.
        let free = DispatchSemaphore(value: 0)

        init(upstream: any ByteStream, chunkSize: Int, depth: Int) {
            self.upstream = upstream
            self.chunkSize = chunkSize
            self.depth = depth
            storage = .allocate(byteCount: chunkSize * depth, alignment: 16)
            lengths = .allocate(capacity: depth)
            lengths.initialize(repeating: 0)
            // Created at 0 and signalled up: libdispatch refuses to dispose of a semaphore
            // whose value is below the one it was created with, which a stopped stream leaves.
            for _ in 0..<depth { free.signal() }
        }

        deinit {
            storage.deallocate()
            lengths.deallocate()
        }

        func slot(_ index: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: storage[(index * chunkSize)..<((index + 1) * chunkSize)])
        }

        func produce() {
            var slot = 0
            while true {
                free.wait()
                if cancelled { return }
                var length = 0
                do {
                    while length < chunkSize {
                        let n = try upstream.read(into: UnsafeMutableRawBufferPointer(rebasing: self.slot(slot)[length...]))
                        if n == 0 { break }
                        length += n
                    }
                } catch {
                    failure = error
                    length = 0
                }
                lengths[slot] = length
                filled.signal()
                if length == 0 { return }
                slot = (slot + 1) % depth
            }
        }
    }

    private let chunks: Chunks
    private var thread: pthread_t?
    // The reader's position.
    private var current = 0
    private var offset = 0
    private var available = -1
    private var ended = false

    init(_ upstream: any ByteStream, chunkSize: Int = 1 << 20, depth: Int = 4) throws {
        chunks = Chunks(upstream: upstream, chunkSize: chunkSize, depth: depth)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(chunks).toOpaque()
        let status = pthread_create(&thread, nil, { context in
            let chunks = Unmanaged<Chunks>.fromOpaque(context!).takeRetainedValue()
            chunks.produce()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<Chunks>.fromOpaque(context).release()
            throw ImageError.io(path: "(read-ahead thread)", reason: String(cString: strerror(status)))
        }
        self.thread = thread
    }

    deinit { stop() }

    /// Ends the producer (it finishes the chunk it is reading) and waits for it.
    func stop() {
        guard let thread else { return }
        chunks.cancelled = true
        for _ in 0..<chunks.depth { chunks.free.signal() }
        pthread_join(thread, nil)
        self.thread = nil
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard !buffer.isEmpty, !ended else { return 0 }
        if available < 0 {
            chunks.filled.wait()
            available = chunks.lengths[current]
            offset = 0
            if available == 0 {
                ended = true
                // The producer has returned: join it, then report what it met.
                if let thread { pthread_join(thread, nil); self.thread = nil }
                if let failure = chunks.failure { throw failure }
                return 0
            }
        }
        let n = min(buffer.count, available - offset)
        buffer.baseAddress!.copyMemory(from: chunks.slot(current).baseAddress! + offset, byteCount: n)
        offset += n
        if offset == available {
            available = -1
            current = (current + 1) % chunks.depth
            chunks.free.signal()
        }
        return n
    }
}

extension ByteStream {
    /// Reads whatever is left.
    func drainToEnd() throws {
        var scratch = [UInt8](repeating: 0, count: 1 << 16)
        while try scratch.withUnsafeMutableBytes({ (raw) throws -> Int in try read(into: raw) }) > 0 {}
    }
}

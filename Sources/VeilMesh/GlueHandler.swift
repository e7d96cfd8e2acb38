import NIOCore

/// Joins two channels on one event loop: what one reads, the other writes, with
/// back-pressure (a side stops reading while its partner cannot write) and half-closure
/// carried across.
///
/// Invariant: both handlers of a pair live on the same event loop, so they call each other
/// directly; a close waits for the last forwarded write, so no byte is dropped.
final class GlueHandler {
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var lastWrite: EventLoopFuture<Void>?
    private let onError: (any Error) -> Void

    private init(onError: @escaping (any Error) -> Void) { self.onError = onError }

    /// What one side received before the pair existed.
    struct Pending {
        var bytes: [ByteBuffer] = []
        var inputClosed = false
        var closed = false
    }

    /// Forwards what this side received before the pair existed, as if it had arrived now;
    /// `partnerActive` false means the partner's connection already ended.
    func replay(_ pending: Pending, partnerActive: Bool) {
        guard let partner else { return }
        guard partnerActive else {
            partnerClose(mode: .all)
            return
        }
        for buffer in pending.bytes { partner.partnerWrite(buffer) }
        partner.partnerFlush()
        if pending.closed {
            partner.partnerClose(mode: .all)
        } else if pending.inputClosed {
            partner.partnerClose(mode: .output)
        }
    }

    /// Two handlers that forward to each other; `onError` hears an error on either side
    /// (both sides are closed after it).
    static func matchedPair(onError: @escaping (any Error) -> Void) -> (GlueHandler, GlueHandler) {
        let first = GlueHandler(onError: onError), second = GlueHandler(onError: onError)
        first.partner = second
        second.partner = first
        return (first, second)
    }

    private func partnerWrite(_ buffer: ByteBuffer) {
        guard let context else { return }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(buffer), promise: promise)
        lastWrite = promise.futureResult
    }

    private func partnerFlush() { context?.flush() }

    /// Closes (all or the output half) once everything written so far is out.
    private func partnerClose(mode: CloseMode) {
        guard let context else { return }
        context.flush()
        let channel = context.channel
        if let lastWrite {
            lastWrite.whenComplete { _ in channel.close(mode: mode, promise: nil) }
        } else {
            channel.close(mode: mode, promise: nil)
        }
    }

    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }
}

extension GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.partnerWrite(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose(mode: .all)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.partnerClose(mode: .output)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        onError(error)
        partner?.partnerClose(mode: .all)
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

//! A lean NATS client for the core workloads (`--client raw`).
//!
//! async-nats is the client users run, so it stays the default. But on a
//! 2-core machine the async-nats bench process is the busier side of every
//! core workload (45-72 µs of client CPU per request/reply round trip against
//! our server's 28-40 µs), so a throughput ratio measures the client and a
//! latency ratio mostly measures the client and the kernel. This client costs
//! far less per message, so the server sets the pace:
//!
//! * blocking `std` sockets and one OS thread per connection (no runtime, no
//!   channel between a socket and the code that counts);
//! * publishes written as pre-encoded batches of `PUB` frames (one `write`
//!   per 64 KiB);
//! * deliveries parsed in place from a large read buffer: a `MSG` frame is
//!   counted (or answered) without allocating.
//!
//! It speaks only what the workloads need: `CONNECT` without credentials,
//! `SUB`, `PUB`, `PING`/`PONG`; a server `-ERR` ends the run with that
//! error. Every wait is bounded by the same timeouts as the async-nats
//! workloads, so a stalled server shows up as lost messages or failed
//! requests, never as a hang.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::Result;
use crate::workloads::{
    FANOUT_SUBSCRIBERS, IDLE_TIMEOUT, Latency, MAX_LATENCY_NS, MarksMut, Outcome, REQREP_DEADLINE,
    REQREP_WARMUP, REQUEST_TIMEOUT, Received, Throughput, WAIT_STEP, Wait, Workload, summarize,
    throughput,
};

/// How long connecting and the `CONNECT`/`PING` handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one publisher may take for all of its messages.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to answer a `PING` sent after a publisher's
/// last batch (it answers once it has processed every publish before it).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a blocked read wakes up to look at its deadline or stop flag.
const READ_TICK: Duration = Duration::from_millis(50);
/// Bytes of `PUB` frames written per `write`.
const BATCH_BYTES: usize = 64 * 1024;
/// Initial read buffer; it grows when one frame does not fit.
const READ_BUFFER: usize = 256 * 1024;

/// Runs a core `workload` once with raw connections (see the module docs).
pub fn run(
    url: &str,
    workload: Workload,
    size: usize,
    msgs: u64,
    marks: MarksMut<'_>,
) -> Result<Outcome> {
    let addr = address(url)?;
    let subject = crate::workloads::unique_subject(workload).to_string();
    let payload = vec![b'x'; size];
    Ok(match workload {
        Workload::Pub => Outcome::Throughput(publish_only(addr, &subject, &payload, msgs, marks)?),
        Workload::Pubsub => Outcome::Throughput(fan(
            addr, workload, &subject, &payload, msgs, 1, None, marks,
        )?),
        Workload::Fanout => Outcome::Throughput(fan(
            addr,
            workload,
            &subject,
            &payload,
            msgs,
            FANOUT_SUBSCRIBERS,
            None,
            marks,
        )?),
        Workload::Queue => Outcome::Throughput(fan(
            addr,
            workload,
            &subject,
            &payload,
            msgs,
            FANOUT_SUBSCRIBERS,
            Some("bench"),
            marks,
        )?),
        Workload::Reqrep => Outcome::Latency(request_reply(addr, &subject, &payload, msgs, marks)?),
        _ => {
            return Err(format!(
                "{} is not a core workload: --client raw runs only pub, pubsub, fanout, queue \
                 and reqrep",
                workload.name()
            )
            .into());
        }
    })
}

/// The socket address of a `nats://host:port` URL (port 4222 if none).
/// Credentials in the URL are refused: this client does not authenticate.
fn address(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    if host_port.contains('@') {
        return Err(
            format!("--client raw does not authenticate: drop the credentials from {url}").into(),
        );
    }
    if host_port.contains(',') {
        return Err(format!("--client raw connects to one server, not to {url}").into());
    }
    let with_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        host_port.to_string()
    } else {
        format!("{host_port}:4222")
    };
    with_port
        .to_socket_addrs()
        .map_err(|err| format!("resolving {url}: {err}"))?
        .next()
        .ok_or_else(|| format!("{url} resolves to no address").into())
}

/// One frame from the server. Ranges index [`Reader::bytes`] and stay valid
/// until the next call of [`Reader::next`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Frame {
    Msg {
        subject: Range<usize>,
        reply: Option<Range<usize>>,
        payload: Range<usize>,
    },
    Ping,
    Pong,
    Ok,
    Info,
    Err(String),
}

/// A frame at the start of `data` and the bytes it took, `None` if `data`
/// does not hold a whole frame yet. Ranges are relative to `data`.
fn parse_frame(data: &[u8]) -> io::Result<Option<(Frame, usize)>> {
    let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
        // No frame line is anywhere near this long; a server that sends one
        // is not speaking the protocol.
        if data.len() > 64 * 1024 {
            return Err(protocol("a frame line longer than 64 KiB"));
        }
        return Ok(None);
    };
    let line = &data[..eol];
    let after_line = eol + 2;
    let op_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let op = &line[..op_end];
    let frame = if op.eq_ignore_ascii_case(b"MSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let mut fields: [Range<usize>; 4] = Default::default();
        let mut count = 0;
        let mut i = op_end;
        while i < line.len() {
            while i < line.len() && line[i] == b' ' {
                i += 1;
            }
            let start = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            if start < i {
                if count == fields.len() {
                    return Err(protocol("a MSG line with more than four fields"));
                }
                fields[count] = start..i;
                count += 1;
            }
        }
        if count < 3 {
            return Err(protocol("a MSG line with fewer than three fields"));
        }
        let size = decimal(&line[fields[count - 1].clone()])
            .ok_or_else(|| protocol("a MSG line whose size is not a number"))?;
        let total = after_line + size + 2;
        if data.len() < total {
            return Ok(None);
        }
        if &data[total - 2..total] != b"\r\n" {
            return Err(protocol("a MSG payload not followed by CRLF"));
        }
        let reply = (count == 4).then(|| fields[2].clone());
        return Ok(Some((
            Frame::Msg {
                subject: fields[0].clone(),
                reply,
                payload: after_line..after_line + size,
            },
            total,
        )));
    } else if op.eq_ignore_ascii_case(b"PING") {
        Frame::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Frame::Pong
    } else if op.eq_ignore_ascii_case(b"+OK") {
        Frame::Ok
    } else if op.eq_ignore_ascii_case(b"INFO") {
        Frame::Info
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        Frame::Err(String::from_utf8_lossy(line).into_owned())
    } else {
        return Err(protocol(&format!(
            "an unknown frame {:?}",
            String::from_utf8_lossy(op)
        )));
    };
    Ok(Some((frame, after_line)))
}

fn decimal(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 12 {
        return None;
    }
    text.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the server sent {what}"),
    )
}

/// The reading half of a connection: frames parsed in place from one buffer.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    /// The next frame, or `None` if none arrived within [`READ_TICK`]. The
    /// server closing the connection is an error.
    fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf[self.start..self.end])? {
                let base = self.start;
                self.start += used;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                return Ok(Some(shift(frame, base)));
            }
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    // One frame larger than the buffer.
                    let doubled = self.buf.len() * 2;
                    self.buf.resize(doubled, 0);
                }
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server closed the connection",
                    ));
                }
                Ok(n) => self.end += n,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Whether every byte read so far has been parsed.
    fn drained(&self) -> bool {
        self.start == self.end
    }

    fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// `frame` with its ranges moved from the parsed slice to the buffer.
fn shift(frame: Frame, base: usize) -> Frame {
    let by = |r: Range<usize>| r.start + base..r.end + base;
    match frame {
        Frame::Msg {
            subject,
            reply,
            payload,
        } => Frame::Msg {
            subject: by(subject),
            reply: reply.map(by),
            payload: by(payload),
        },
        other => other,
    }
}

/// One raw connection: a reader and the socket written to.
struct Conn {
    reader: Reader,
    writer: TcpStream,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|err| format!("connecting to {addr}: {err}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TICK))?;
        stream.set_write_timeout(Some(PUBLISH_TIMEOUT))?;
        let writer = stream.try_clone()?;
        let mut conn = Conn {
            reader: Reader {
                stream,
                buf: vec![0; READ_BUFFER],
                start: 0,
                end: 0,
            },
            writer,
        };
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        match conn.frame_before(deadline)? {
            Frame::Info => {}
            other => return Err(format!("expected INFO from {addr}, got {other:?}").into()),
        }
        conn.writer.write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":true,\"protocol\":1,\
              \"name\":\"nats-bench-raw\",\"lang\":\"rust-raw\",\"version\":\"0\"}\r\n",
        )?;
        conn.sync(deadline)?;
        Ok(conn)
    }

    /// The next frame before `deadline`, answering `PING`s on the way.
    fn frame_before(&mut self, deadline: Instant) -> Result<Frame> {
        loop {
            match self.next_delivery()? {
                Some(frame) => return Ok(frame),
                None if Instant::now() >= deadline => {
                    return Err("the server did not answer in time".into());
                }
                None => {}
            }
        }
    }

    /// The next frame that is not a `PING` (answered here) or `-ERR` (an
    /// error), or `None` if none arrived within [`READ_TICK`].
    fn next_delivery(&mut self) -> io::Result<Option<Frame>> {
        match self.reader.next()? {
            Some(Frame::Ping) => {
                self.writer.write_all(b"PONG\r\n")?;
                Ok(None)
            }
            Some(Frame::Err(text)) => Err(io::Error::other(format!("server error: {text}"))),
            other => Ok(other),
        }
    }

    /// A `PING`/`PONG` round trip: the server has processed everything sent
    /// on this connection before it. Deliveries read on the way are dropped,
    /// so use it before the measured phase or on a connection that gets none.
    fn sync(&mut self, deadline: Instant) -> Result<()> {
        self.writer.write_all(b"PING\r\n")?;
        loop {
            if self.frame_before(deadline)? == Frame::Pong {
                return Ok(());
            }
        }
    }

    fn subscribe(&mut self, subject: &str, queue: Option<&str>, sid: u32) -> Result<()> {
        let line = match queue {
            Some(queue) => format!("SUB {subject} {queue} {sid}\r\n"),
            None => format!("SUB {subject} {sid}\r\n"),
        };
        self.writer.write_all(line.as_bytes())?;
        self.sync(Instant::now() + CONNECT_TIMEOUT)
    }
}

/// A `PUB` frame (with `reply` as the reply subject if given).
fn pub_frame(subject: &str, reply: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut frame = match reply {
        Some(reply) => format!("PUB {subject} {reply} {}\r\n", payload.len()),
        None => format!("PUB {subject} {}\r\n", payload.len()),
    }
    .into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// Writes `msgs` `PUB` frames in batches of about [`BATCH_BYTES`]. Returns
/// how many were written whole when it finished, timed out or failed.
fn publish_all(conn: &mut Conn, subject: &str, payload: &[u8], msgs: u64) -> u64 {
    let frame = pub_frame(subject, None, payload);
    let per_batch = (BATCH_BYTES / frame.len()).max(1);
    let batch = frame.repeat(per_batch);
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    let mut sent = 0;
    while sent < msgs && Instant::now() < deadline {
        let n = usize::try_from(msgs - sent).map_or(per_batch, |left| left.min(per_batch));
        if conn.writer.write_all(&batch[..n * frame.len()]).is_err() {
            break;
        }
        sent += n as u64;
    }
    sent
}

fn publish_only(
    addr: SocketAddr,
    subject: &str,
    payload: &[u8],
    msgs: u64,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let mut conn = Conn::connect(addr)?;
    marks.start();
    let start = Instant::now();
    let sent = publish_all(&mut conn, subject, payload, msgs);
    conn.sync(Instant::now() + SYNC_TIMEOUT)?;
    let elapsed = start.elapsed();
    marks.end();
    Ok(throughput(
        Workload::Pub,
        payload.len(),
        sent,
        msgs,
        sent,
        elapsed,
    ))
}

/// Counts `MSG` frames until `stop` is set, adding to `progress` whenever
/// the read buffer is drained.
fn count_deliveries(
    mut conn: Conn,
    progress: &AtomicU64,
    stop: &AtomicBool,
) -> io::Result<Received> {
    let mut got = Received::default();
    let mut unreported = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(Frame::Msg { .. }) = conn.next_delivery()? {
            got.record(Instant::now());
            unreported += 1;
        }
        if unreported > 0 && conn.reader.drained() {
            progress.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    }
    Ok(got)
}

/// Waits until `progress` reaches `expected`, or stops moving for `idle`.
fn wait_for(progress: &AtomicU64, expected: u64, idle: Duration) {
    let mut wait = Wait::new(progress);
    while wait.goes_on(progress, expected, idle) {
        thread::sleep(WAIT_STEP);
    }
}

/// pubsub (`members` 1), fanout (`members` plain subscribers) and queue (a
/// group of `members`).
#[allow(clippy::too_many_arguments)]
fn fan(
    addr: SocketAddr,
    workload: Workload,
    subject: &str,
    payload: &[u8],
    msgs: u64,
    members: usize,
    queue: Option<&str>,
    marks: MarksMut<'_>,
) -> Result<Throughput> {
    let fanned = |sent: u64| {
        if queue.is_some() {
            sent
        } else {
            sent * members as u64
        }
    };
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscribers: Vec<JoinHandle<io::Result<Received>>> = Vec::with_capacity(members);
    for _ in 0..members {
        let mut conn = Conn::connect(addr)?;
        conn.subscribe(subject, queue, 1)?;
        let (progress, stop) = (Arc::clone(&progress), Arc::clone(&stop));
        subscribers.push(thread::spawn(move || {
            count_deliveries(conn, &progress, &stop)
        }));
    }

    let mut publisher = Conn::connect(addr)?;
    marks.start();
    let sent = publish_all(&mut publisher, subject, payload, msgs);
    wait_for(&progress, fanned(sent), IDLE_TIMEOUT);
    marks.end();
    stop.store(true, Ordering::Relaxed);

    let mut all = Received::default();
    let mut failure = None;
    for subscriber in subscribers {
        match subscriber.join() {
            Ok(Ok(got)) => all.merge(&got),
            Ok(Err(err)) => failure = Some(err.to_string()),
            Err(_) => failure = Some("a subscriber thread panicked".to_string()),
        }
    }
    if let Some(failure) = failure {
        return Err(format!("subscriber: {failure}").into());
    }
    Ok(throughput(
        workload,
        payload.len(),
        sent,
        fanned(msgs),
        all.count,
        all.span(),
    ))
}

/// Answers every request on `conn` with its own payload until `stop`.
fn respond(mut conn: Conn, stop: &AtomicBool) -> io::Result<()> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Frame::Msg {
            reply: Some(reply),
            payload,
            ..
        }) = conn.next_delivery()?
        {
            out.clear();
            out.extend_from_slice(b"PUB ");
            out.extend_from_slice(conn.reader.bytes(reply));
            out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
            out.extend_from_slice(conn.reader.bytes(payload));
            out.extend_from_slice(b"\r\n");
            conn.writer.write_all(&out)?;
        }
    }
    Ok(())
}

fn request_reply(
    addr: SocketAddr,
    subject: &str,
    payload: &[u8],
    requests: u64,
    marks: MarksMut<'_>,
) -> Result<Latency> {
    let mut responder = Conn::connect(addr)?;
    responder.subscribe(subject, None, 1)?;
    let stop = Arc::new(AtomicBool::new(false));
    let serve = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || respond(responder, &stop))
    };

    let mut requester = Conn::connect(addr)?;
    let inbox = format!("_INBOX.raw.{}.{subject}", std::process::id());
    requester.subscribe(&format!("{inbox}.*"), None, 1)?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_NS, 3)?;
    let mut completed = 0;
    let deadline = Instant::now() + REQREP_DEADLINE;
    let mut failure = None;
    for i in 0..REQREP_WARMUP + requests {
        if Instant::now() >= deadline {
            break;
        }
        if i == REQREP_WARMUP {
            marks.start();
        }
        // A reply subject per request: a late reply to an earlier request
        // is never taken for this one's.
        let reply = format!("{inbox}.{i}");
        let frame = pub_frame(subject, Some(&reply), payload);
        let start = Instant::now();
        if let Err(err) = requester.writer.write_all(&frame) {
            failure = Some(format!("sending request {i}: {err}"));
            break;
        }
        let answered = loop {
            match requester.next_delivery() {
                Ok(Some(Frame::Msg { subject, .. }))
                    if requester.reader.bytes(subject.clone()) == reply.as_bytes() =>
                {
                    break true;
                }
                Ok(_) if start.elapsed() >= REQUEST_TIMEOUT => break false,
                Ok(_) => {}
                Err(err) => {
                    failure = Some(err.to_string());
                    break false;
                }
            }
        };
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if failure.is_some() {
            break;
        }
        if answered && i >= REQREP_WARMUP {
            histogram.saturating_record(nanos.max(1));
            completed += 1;
        }
    }
    // Each reply has been received: the server has done its part.
    marks.end();
    stop.store(true, Ordering::Relaxed);
    let served = serve.join();
    if let Some(failure) = failure {
        return Err(format!("requester: {failure}").into());
    }
    match served {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(format!("responder: {err}").into()),
        Err(_) => return Err("the responder thread panicked".into()),
    }
    Ok(Latency {
        workload: Workload::Reqrep,
        size: payload.len(),
        requests,
        completed,
        failed: requests - completed,
        percentiles: summarize(&histogram),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(mut data: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some((frame, used)) = parse_frame(data).unwrap() {
            frames.push(frame);
            data = &data[used..];
        }
        assert!(
            data.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(data)
        );
        frames
    }

    #[test]
    fn msg_frames_with_and_without_reply_give_subject_reply_and_payload() {
        let data =
            b"MSG a.b 1 5\r\nhello\r\nMSG a.c 2 _INBOX.x.7 3\r\nabc\r\nPING\r\n+OK\r\nPONG\r\n";
        let frames = parse_all(data);
        assert_eq!(frames.len(), 5);
        let Frame::Msg {
            subject,
            reply,
            payload,
        } = frames[0].clone()
        else {
            panic!("expected MSG, got {:?}", frames[0]);
        };
        assert_eq!(&data[subject], b"a.b");
        assert_eq!(reply, None);
        assert_eq!(&data[payload], b"hello");
        assert_eq!(frames[2..], [Frame::Ping, Frame::Ok, Frame::Pong]);
    }

    #[test]
    fn a_frame_split_anywhere_waits_for_the_rest() {
        let data = b"MSG a.b 1 _R.1 5\r\nhello\r\n";
        for cut in 0..data.len() {
            assert_eq!(parse_frame(&data[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (frame, used) = parse_frame(data).unwrap().unwrap();
        assert_eq!(used, data.len());
        let Frame::Msg { reply, payload, .. } = frame else {
            panic!("expected MSG");
        };
        assert_eq!(&data[reply.unwrap()], b"_R.1");
        assert_eq!(&data[payload], b"hello");
    }

    #[test]
    fn a_server_error_is_a_frame_and_garbage_is_an_error() {
        let frames = parse_all(b"-ERR 'Authorization Violation'\r\n");
        assert_eq!(
            frames,
            [Frame::Err("-ERR 'Authorization Violation'".to_string())]
        );
        assert!(parse_frame(b"BOGUS 1\r\n").is_err());
        assert!(parse_frame(b"MSG a 1 x\r\n").is_err());
        assert!(parse_frame(b"MSG a 1 2\r\nabcd").is_err());
        assert!(parse_frame(b"MSG a\r\n").is_err());
    }

    #[test]
    fn urls_resolve_with_the_default_port_and_credentials_are_refused() {
        assert_eq!(
            address("nats://127.0.0.1:4333").unwrap(),
            "127.0.0.1:4333".parse().unwrap()
        );
        assert_eq!(
            address("127.0.0.1").unwrap(),
            "127.0.0.1:4222".parse().unwrap()
        );
        assert!(address("nats://u:p@127.0.0.1:4222").is_err());
        assert!(address("nats://127.0.0.1:1,127.0.0.1:2").is_err());
    }

    /// A fake server on a local socket: the reader reassembles frames that
    /// arrive a few bytes at a time, and a frame larger than the buffer
    /// grows it.
    #[test]
    fn the_reader_reassembles_frames_across_reads_and_grows_for_large_ones() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let big = vec![b'y'; 3 * 1024];
        let mut wire = b"MSG s 1 2\r\nab\r\n".to_vec();
        wire.extend_from_slice(format!("MSG s 1 {}\r\n", big.len()).as_bytes());
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"\r\nPONG\r\n");
        let server = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            for chunk in wire.chunks(7) {
                socket.write_all(chunk).unwrap();
                socket.flush().unwrap();
            }
        });
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TICK)).unwrap();
        let mut reader = Reader {
            stream,
            buf: vec![0; 64],
            start: 0,
            end: 0,
        };
        let mut frames = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while frames.len() < 3 && Instant::now() < deadline {
            if let Some(frame) = reader.next().unwrap() {
                if let Frame::Msg { payload, .. } = &frame {
                    frames.push(reader.bytes(payload.clone()).to_vec());
                } else {
                    assert_eq!(frame, Frame::Pong);
                    frames.push(b"PONG".to_vec());
                }
            }
        }
        server.join().unwrap();
        assert_eq!(frames, [b"ab".to_vec(), big, b"PONG".to_vec()]);
        assert!(reader.drained());
    }
}

//! Counts frames on one interface of a namespace: an AF_PACKET socket, opened by a
//! thread that has joined the namespace, records every frame sent (or received) with its
//! time, its IPv4 destination and protocol.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub at: Instant,
    /// Ethertype: 0x0800 IPv4, 0x0806 ARP.
    pub ethertype: u16,
    /// IPv4 destination, or for ARP the target protocol address.
    pub dst: Option<Ipv4Addr>,
    /// IP protocol: 6 TCP, 17 UDP.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (SYN = 0x02).
    pub tcp_flags: u8,
}

pub struct Capture {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const PACKET_OUTGOING: u8 = 4;

/// Which frames of an interface a capture records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

impl Capture {
    /// Starts capturing what `interface` in namespace `ns` sends.
    pub fn start(ns: &str, interface: &str) -> Capture {
        Capture::start_direction(ns, interface, Direction::Sent)
    }

    /// Starts capturing the frames that `interface` in namespace `ns` sends or receives.
    /// On a switch port, the received frames are everything its host sent.
    pub fn start_direction(ns: &str, interface: &str, direction: Direction) -> Capture {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let frames = frames.clone();
            let stop = stop.clone();
            let ns = ns.to_string();
            let interface = interface.to_string();
            std::thread::spawn(move || {
                capture(&ns, &interface, direction, &frames, &stop, ready_tx)
            })
        };
        ready_rx.recv_timeout(Duration::from_secs(5)).expect("capture socket ready");
        Capture { frames, stop, thread: Some(thread) }
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture(
    ns: &str,
    interface: &str,
    direction: Direction,
    frames: &Mutex<Vec<Frame>>,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) {
    crate::net::enter_namespace(ns);
    let name = std::ffi::CString::new(interface).unwrap();
    // SAFETY: plain libc calls on owned, NUL-terminated strings and local structs.
    unsafe {
        let protocol = (libc::ETH_P_ALL as u16).to_be() as i32;
        let socket = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol);
        assert!(socket >= 0, "AF_PACKET socket");
        let index = libc::if_nametoindex(name.as_ptr());
        assert!(index > 0, "interface {interface} in {ns}");
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol as u16;
        addr.sll_ifindex = index as i32;
        let bound = libc::bind(
            socket,
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(bound, 0, "bind AF_PACKET");
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let _ = ready.send(());

        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::SeqCst) {
            let mut from: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = libc::recvfrom(
                socket,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut len,
            );
            let outgoing = from.sll_pkttype == PACKET_OUTGOING;
            if n <= 0 || outgoing != (direction == Direction::Sent) {
                continue;
            }
            if let Some(frame) = parse(&buf[..n as usize]) {
                frames.lock().unwrap().push(frame);
            }
        }
        libc::close(socket);
    }
}

fn parse(frame: &[u8]) -> Option<Frame> {
    if frame.len() < 14 {
        return None;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut out = Frame {
        at: Instant::now(),
        ethertype,
        dst: None,
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
    };
    // ARP for IPv4 over Ethernet: the target protocol address is bytes 24-27.
    if ethertype == 0x0806 && frame.len() >= 14 + 28 {
        let arp = &frame[14..];
        out.dst = Some(Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]));
    }
    if ethertype == 0x0800 && frame.len() >= 34 {
        let ip = &frame[14..];
        let header = usize::from(ip[0] & 0x0f) * 4;
        out.protocol = ip[9];
        out.dst = Some(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
        if ip.len() >= header + 14 && (out.protocol == 6 || out.protocol == 17) {
            out.src_port = u16::from_be_bytes([ip[header], ip[header + 1]]);
            out.dst_port = u16::from_be_bytes([ip[header + 2], ip[header + 3]]);
            if out.protocol == 6 {
                out.tcp_flags = ip[header + 13];
            }
        }
    }
    Some(out)
}

/// Returns the largest number of frames within any window of length `window`.
pub fn max_in_window(frames: &[Frame], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..frames.len() {
        while frames[end].at.duration_since(frames[start].at) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

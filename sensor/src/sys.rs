//! The system calls the sensor needs and no dependency wraps safely: an AF_PACKET raw socket
//! (create, bind, receive with link-layer metadata, drop statistics), `poll`, `setrlimit` and
//! `if_nametoindex`. This is the only module allowed `unsafe`; every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `PACKET_HOST` etc. from `<linux/if_packet.h>`: how the packet met the interface.
pub const PACKET_OUTGOING: u8 = 4;

/// Link-layer metadata of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// The frame's length on the wire (may exceed what was copied).
    pub len: usize,
    pub ifindex: u32,
    pub pkt_type: u8,
}

/// Packets and drops the kernel counted on a packet socket since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames that passed the filter (queued or dropped).
    pub packets: u64,
    /// Frames that passed the filter but found the receive queue full.
    pub drops: u64,
}

/// An `AF_PACKET`/`SOCK_RAW` socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    stats: SocketStats,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

impl PacketSocket {
    /// Opens the socket with protocol 0: it receives nothing until [`PacketSocket::bind`], so a
    /// filter attached in between sees every packet the socket will ever get.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant arguments; the result is checked before use.
        let fd = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, stats: SocketStats::default() })
    }

    /// Starts receiving every protocol, on one interface (`ifindex`) or all (0).
    pub fn bind(&self, ifindex: u32) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        check(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: `value` outlives the call and the length is its size.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// Sets the receive buffer, above `net.core.rmem_max` when the process may (CAP_NET_ADMIN).
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        self.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
            .or_else(|_| self.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
    }

    /// Makes [`PacketSocket::recv`] return `WouldBlock` after `timeout` without a packet.
    pub fn set_receive_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros().min(999_999) as i32),
        };
        // SAFETY: `tv` outlives the call and the length is its size.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// Receives one frame into `buf` (cut to its length; `FrameMeta::len` tells the real length).
    /// With `wait`, blocks up to the receive timeout; without, returns `WouldBlock` at once.
    pub fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<(usize, FrameMeta)> {
        let flags = if wait { libc::MSG_TRUNC } else { libc::MSG_TRUNC | libc::MSG_DONTWAIT };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        let mut addr_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is valid for `buf.len()` writable bytes; `addr`/`addr_len` describe a
        // buffer of the right size, which the kernel fills and never overruns.
        let len = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
                (&raw mut addr).cast::<libc::sockaddr>(),
                &raw mut addr_len,
            )
        };
        let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
        let meta = FrameMeta { len, ifindex: u32::try_from(addr.sll_ifindex).unwrap_or(0), pkt_type: addr.sll_pkttype };
        Ok((len.min(buf.len()), meta))
    }

    /// The kernel's packet and drop counts, accumulated (the kernel resets them on each read).
    pub fn statistics(&mut self) -> io::Result<SocketStats> {
        // SAFETY: tpacket_stats is plain old data; all-zero is a valid value.
        let mut stats: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats`/`len` describe a buffer of the size the kernel writes for this option.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &raw mut len,
            )
        })?;
        self.stats.packets += u64::from(stats.tp_packets);
        self.stats.drops += u64::from(stats.tp_drops);
        Ok(self.stats)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, count 1.
    match check(unsafe { libc::poll(&raw mut pfd, 1, millis) }) {
        Ok(n) => Ok(n > 0),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(err) => Err(err),
    }
}

/// Lifts RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps against. Best effort: newer
/// kernels account BPF memory to the cgroup instead.
pub fn raise_memlock_limit() -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    check(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) })?;
    Ok(())
}

/// The index of the network interface `name`.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c_name =
        CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(io::Error::new(io::ErrorKind::NotFound, format!("no network interface named {name}"))),
        index => Ok(index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_unknown_names_do_not() {
        assert!(interface_index("lo").unwrap() > 0);
        assert_eq!(interface_index("no-such-if0").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(interface_index("a\0b").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}

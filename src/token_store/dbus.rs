//! A minimal D-Bus client: just what the keychain store's Secret Service calls need. It
//! connects to the session bus's Unix socket, authenticates with SASL `EXTERNAL`, sends
//! method calls and reads their replies, marshalling the basic and container types those
//! calls use. Synchronous: it runs on the keychain store's own thread, with socket time-outs.
//! (A general D-Bus crate, zbus, would have cost 2 MB of the 5 MB addon.)

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A value to send. Arrays carry their element signature, so an empty one can be written.
#[derive(Debug, Clone)]
pub enum Arg {
    Byte(u8),
    Bool(bool),
    Str(String),
    Path(String),
    Sig(String),
    Bytes(Vec<u8>),
    Array(&'static str, Vec<Arg>),
    Struct(Vec<Arg>),
    Entry(Box<Arg>, Box<Arg>),
    Variant(Box<Arg>),
}

impl Arg {
    fn signature(&self) -> String {
        match self {
            Arg::Byte(_) => "y".into(),
            Arg::Bool(_) => "b".into(),
            Arg::Str(_) => "s".into(),
            Arg::Path(_) => "o".into(),
            Arg::Sig(_) => "g".into(),
            Arg::Bytes(_) => "ay".into(),
            Arg::Array(elem, _) => format!("a{elem}"),
            Arg::Struct(items) => format!("({})", items.iter().map(Arg::signature).collect::<String>()),
            Arg::Entry(k, v) => format!("{{{}{}}}", k.signature(), v.signature()),
            Arg::Variant(_) => "v".into(),
        }
    }

    /// `a{ss}` from pairs.
    pub fn string_dict(pairs: &[(&str, &str)]) -> Arg {
        let entries = pairs
            .iter()
            .map(|(k, v)| Arg::Entry(Box::new(Arg::Str(k.to_string())), Box::new(Arg::Str(v.to_string()))))
            .collect();
        Arg::Array("{ss}", entries)
    }
}

/// A value received.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Strings, object paths and signatures.
    Str(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The strings of an array of strings or object paths.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        }
    }
}

fn alignment(sig: u8) -> usize {
    match sig {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

/// Where the complete type starting at `sig[i]` ends.
fn type_end(sig: &[u8], i: usize) -> Result<usize, String> {
    match sig.get(i) {
        None => Err("truncated signature".into()),
        Some(b'a') => type_end(sig, i + 1),
        Some(open @ (b'(' | b'{')) => {
            let close = if *open == b'(' { b')' } else { b'}' };
            let mut j = i + 1;
            while sig.get(j) != Some(&close) {
                j = type_end(sig, j)?;
            }
            Ok(j + 1)
        }
        Some(_) => Ok(i + 1),
    }
}

struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    fn pad(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn put(&mut self, a: &Arg) {
        match a {
            Arg::Byte(b) => self.buf.push(*b),
            Arg::Bool(b) => self.u32(u32::from(*b)),
            Arg::Str(s) | Arg::Path(s) => {
                self.u32(s.len() as u32);
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Arg::Sig(s) => {
                self.buf.push(s.len() as u8);
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            Arg::Bytes(b) => {
                self.u32(b.len() as u32);
                self.buf.extend_from_slice(b);
            }
            Arg::Array(elem, items) => {
                self.u32(0);
                let at = self.buf.len() - 4;
                self.pad(alignment(elem.as_bytes()[0]));
                let start = self.buf.len();
                for i in items {
                    self.put(i);
                }
                let n = (self.buf.len() - start) as u32;
                self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
            Arg::Struct(items) => {
                self.pad(8);
                for i in items {
                    self.put(i);
                }
            }
            Arg::Entry(k, v) => {
                self.pad(8);
                self.put(k);
                self.put(v);
            }
            Arg::Variant(inner) => {
                self.put(&Arg::Sig(inner.signature()));
                self.put(inner);
            }
        }
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl Dec<'_> {
    fn align(&mut self, n: usize) -> Result<(), String> {
        self.pos = self.pos.div_ceil(n) * n;
        if self.pos > self.buf.len() {
            return Err("truncated message".into());
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated message")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, size: usize) -> Result<u64, String> {
        self.align(size)?;
        let big = self.big;
        let b = self.take(size)?;
        let mut v: u64 = 0;
        for i in 0..size {
            let byte = if big { b[i] } else { b[size - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    }

    fn text(&mut self, len: usize) -> Result<String, String> {
        let s = String::from_utf8_lossy(self.take(len)?).into_owned();
        self.take(1)?; // the NUL
        Ok(s)
    }

    /// One complete type starting at `sig[*i]`.
    fn value(&mut self, sig: &[u8], i: &mut usize) -> Result<Value, String> {
        let c = *sig.get(*i).ok_or("truncated signature")?;
        *i += 1;
        Ok(match c {
            b'y' => Value::Int(self.uint(1)? as i64),
            b'b' => Value::Bool(self.uint(4)? != 0),
            b'n' => Value::Int(self.uint(2)? as u16 as i16 as i64),
            b'q' => Value::Int(self.uint(2)? as i64),
            b'i' => Value::Int(self.uint(4)? as u32 as i32 as i64),
            b'u' | b'h' => Value::Int(self.uint(4)? as i64),
            b'x' | b't' => Value::Int(self.uint(8)? as i64),
            b'd' => Value::Double(f64::from_bits(self.uint(8)?)),
            b's' | b'o' => {
                let len = self.uint(4)? as usize;
                Value::Str(self.text(len)?)
            }
            b'g' => {
                let len = self.uint(1)? as usize;
                Value::Str(self.text(len)?)
            }
            b'v' => {
                let len = self.uint(1)? as usize;
                let inner = self.text(len)?;
                let mut j = 0;
                Value::Variant(Box::new(self.value(inner.as_bytes(), &mut j)?))
            }
            b'a' => {
                let len = self.uint(4)? as usize;
                let elem = *i;
                let end_sig = type_end(sig, elem)?;
                self.align(alignment(sig[elem]))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or("truncated array")?;
                *i = end_sig;
                if sig[elem] == b'y' {
                    return Ok(Value::Bytes(self.take(len)?.to_vec()));
                }
                let mut items = Vec::new();
                while self.pos < end {
                    let mut j = elem;
                    items.push(self.value(sig, &mut j)?);
                }
                Value::Array(items)
            }
            b'(' | b'{' => {
                self.align(8)?;
                let close = if c == b'(' { b')' } else { b'}' };
                let mut items = Vec::new();
                while sig.get(*i) != Some(&close) {
                    items.push(self.value(sig, i)?);
                }
                *i += 1;
                Value::Struct(items)
            }
            other => return Err(format!("unsupported D-Bus type `{}`", other as char)),
        })
    }
}

/// Decode the values of `sig` from `buf` (aligned as if `buf` started a message body).
fn decode(buf: &[u8], sig: &str, big: bool) -> Result<Vec<Value>, String> {
    let mut d = Dec { buf, pos: 0, big };
    let sig = sig.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < sig.len() {
        out.push(d.value(sig, &mut i)?);
    }
    Ok(out)
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

/// A method call: header (fixed part, then the fields `a(yv)`), padded to 8, then the body.
fn method_call(serial: u32, dest: &str, path: &str, iface: &str, member: &str, args: &[Arg]) -> Vec<u8> {
    let mut body = Enc { buf: Vec::new() };
    for a in args {
        body.put(a);
    }
    let signature: String = args.iter().map(Arg::signature).collect();
    let field = |code: u8, v: Arg| Arg::Struct(vec![Arg::Byte(code), Arg::Variant(Box::new(v))]);
    let mut fields = vec![
        field(1, Arg::Path(path.into())),
        field(2, Arg::Str(iface.into())),
        field(3, Arg::Str(member.into())),
        field(6, Arg::Str(dest.into())),
    ];
    if !signature.is_empty() {
        fields.push(field(8, Arg::Sig(signature)));
    }
    let mut m = Enc {
        buf: vec![b'l', METHOD_CALL, 0, 1],
    };
    m.u32(body.buf.len() as u32);
    m.u32(serial);
    m.put(&Arg::Array("(yv)", fields));
    m.pad(8);
    m.buf.extend_from_slice(&body.buf);
    m.buf
}

/// A message read from the bus: its type, the serial it answers, an error name, the body.
struct Reply {
    kind: u8,
    reply_to: Option<u32>,
    error: Option<String>,
    body: Vec<Value>,
}

fn read_message(r: &mut impl Read) -> Result<Reply, String> {
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed)
        .map_err(|e| format!("reading from the bus: {e}"))?;
    let big = fixed[0] == b'B';
    let word = |at: usize| {
        let b: [u8; 4] = fixed[at..at + 4].try_into().expect("4 bytes");
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let (body_len, fields_len) = (word(4) as usize, word(12) as usize);
    if body_len > 64 << 20 || fields_len > 1 << 20 {
        return Err("an oversized message from the bus".into());
    }
    let header_len = (16 + fields_len).div_ceil(8) * 8;
    let mut all = fixed.to_vec();
    all.resize(header_len + body_len, 0);
    r.read_exact(&mut all[16..])
        .map_err(|e| format!("reading from the bus: {e}"))?;
    let mut d = Dec {
        buf: &all[..header_len],
        pos: 12,
        big,
    };
    let mut j = 0;
    let fields = d.value(b"a(yv)", &mut j)?;
    let (mut reply_to, mut error, mut signature) = (None, None, String::new());
    if let Value::Array(fields) = fields {
        for f in fields {
            let Value::Struct(parts) = f else { continue };
            let (Some(Value::Int(code)), Some(Value::Variant(v))) = (parts.first(), parts.get(1)) else {
                continue;
            };
            match (code, v.as_ref()) {
                (4, Value::Str(s)) => error = Some(s.clone()),
                (5, Value::Int(n)) => reply_to = Some(*n as u32),
                (8, Value::Str(s)) => signature = s.clone(),
                _ => {}
            }
        }
    }
    Ok(Reply {
        kind: fixed[1],
        reply_to,
        error,
        body: decode(&all[header_len..], &signature, big)?,
    })
}

/// A connection to the session bus.
pub struct Bus {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    serial: u32,
}

/// The session bus's socket addresses: `DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`.
fn addresses() -> Vec<(bool, String)> {
    let unescape = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    match std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().filter(|a| !a.is_empty()) {
        Some(list) => list
            .split(';')
            .filter_map(|a| a.strip_prefix("unix:"))
            .filter_map(|params| {
                params.split(',').find_map(|kv| match kv.split_once('=') {
                    Some(("path", p)) => Some((false, unescape(p))),
                    Some(("abstract", p)) => Some((true, unescape(p))),
                    _ => None,
                })
            })
            .collect(),
        None => std::env::var("XDG_RUNTIME_DIR")
            .map(|d| vec![(false, format!("{d}/bus"))])
            .unwrap_or_default(),
    }
}

fn connect(abstract_name: bool, path: &str) -> std::io::Result<UnixStream> {
    if abstract_name {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(path.as_bytes())?;
            return UnixStream::connect_addr(&addr);
        }
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::other("abstract sockets exist only on Linux"));
    }
    UnixStream::connect(path)
}

impl Bus {
    /// Connect to the session bus and say hello; every read and write waits at most `limit`.
    pub fn session(limit: Duration) -> Result<Bus, String> {
        let candidates = addresses();
        if candidates.is_empty() {
            return Err("no session D-Bus (`DBUS_SESSION_BUS_ADDRESS` is not set)".into());
        }
        let mut last = String::new();
        for (abstract_name, path) in candidates {
            match connect(abstract_name, &path) {
                Ok(s) => return Bus::start(s, limit),
                Err(e) => last = format!("cannot connect to the session D-Bus at `{path}`: {e}"),
            }
        }
        Err(last)
    }

    fn start(stream: UnixStream, limit: Duration) -> Result<Bus, String> {
        let io = |e: std::io::Error| format!("the session D-Bus: {e}");
        stream.set_read_timeout(Some(limit)).map_err(io)?;
        stream.set_write_timeout(Some(limit)).map_err(io)?;
        let mut writer = stream.try_clone().map_err(io)?;
        let mut reader = BufReader::new(stream);
        // SASL EXTERNAL: the bus knows who we are from the socket; we name our uid in hex.
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        writer
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
            .map_err(io)?;
        let mut line = String::new();
        reader.read_line(&mut line).map_err(io)?;
        if !line.starts_with("OK ") {
            return Err(format!("the session D-Bus refused us: `{}`", line.trim()));
        }
        writer.write_all(b"BEGIN\r\n").map_err(io)?;
        let mut bus = Bus {
            reader,
            writer,
            serial: 0,
        };
        bus.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        )?;
        Ok(bus)
    }

    /// Call a method and wait for its reply (signals and other messages are skipped). An
    /// error reply becomes `Err("<error name>: <message>")`.
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Arg],
    ) -> Result<Vec<Value>, String> {
        self.serial += 1;
        let serial = self.serial;
        let msg = method_call(serial, dest, path, iface, member, args);
        self.writer
            .write_all(&msg)
            .map_err(|e| format!("writing to the bus: {e}"))?;
        loop {
            let reply = read_message(&mut self.reader)?;
            if reply.reply_to != Some(serial) {
                continue;
            }
            return match reply.kind {
                METHOD_RETURN => Ok(reply.body),
                ERROR => {
                    let name = reply.error.unwrap_or_else(|| "an error".into());
                    let text = reply.body.first().and_then(Value::as_str).unwrap_or("").to_string();
                    Err(if text.is_empty() {
                        name
                    } else {
                        format!("{name}: {text}")
                    })
                }
                _ => continue,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshalling_round_trips_the_secret_service_shapes() {
        // CreateItem's arguments: a{sv}, (oayays), b.
        let props = Arg::Array(
            "{sv}",
            vec![Arg::Entry(
                Box::new(Arg::Str("org.freedesktop.Secret.Item.Attributes".into())),
                Box::new(Arg::Variant(Box::new(Arg::string_dict(&[
                    ("application", "x"),
                    ("key", "k"),
                ])))),
            )],
        );
        let secret = Arg::Struct(vec![
            Arg::Path("/org/freedesktop/secrets/session/s1".into()),
            Arg::Bytes(vec![]),
            Arg::Bytes(b"{\"refresh_token\":\"rt\"}".to_vec()),
            Arg::Str("application/json".into()),
        ]);
        let args = [props, secret, Arg::Bool(true)];
        let sig: String = args.iter().map(Arg::signature).collect();
        assert_eq!(sig, "a{sv}(oayays)b");
        let mut e = Enc { buf: Vec::new() };
        for a in &args {
            e.put(a);
        }
        let v = decode(&e.buf, &sig, false).unwrap();
        let Value::Array(entries) = &v[0] else { panic!("{v:?}") };
        let Value::Struct(kv) = &entries[0] else { panic!() };
        assert_eq!(kv[0], Value::Str("org.freedesktop.Secret.Item.Attributes".into()));
        let Value::Variant(dict) = &kv[1] else { panic!() };
        let Value::Array(pairs) = dict.as_ref() else { panic!() };
        assert_eq!(
            pairs[1],
            Value::Struct(vec![Value::Str("key".into()), Value::Str("k".into())])
        );
        let Value::Struct(s) = &v[1] else { panic!() };
        assert_eq!(s[2], Value::Bytes(b"{\"refresh_token\":\"rt\"}".to_vec()));
        assert_eq!(v[2], Value::Bool(true));
    }

    #[test]
    fn a_method_call_header_is_well_formed() {
        let m = method_call(
            7,
            "org.freedesktop.secrets",
            "/o",
            "i.f",
            "M",
            &[Arg::Str("plain".into())],
        );
        assert_eq!(&m[..4], &[b'l', METHOD_CALL, 0, 1]);
        let reply = read_message(&mut &m[..]).unwrap();
        assert_eq!(reply.kind, METHOD_CALL);
        assert_eq!(reply.body, vec![Value::Str("plain".into())]);
    }

    #[test]
    fn signatures_find_the_end_of_a_complete_type() {
        assert_eq!(type_end(b"a{sv}u", 0), Ok(5));
        assert_eq!(type_end(b"(oayays)", 0), Ok(8));
        assert!(type_end(b"(oa", 0).is_err());
    }
}

//! Network addresses in keyword fields: `src_ip:10.0.0.0/8` and
//! `src_ip:[10.0.0.0 TO 10.0.0.255]` find the values that are addresses in
//! that block or span, as an analyst hunting a subnet means them. Values
//! stay text in the index (a field has no type); the query walks only the
//! field's terms that read as addresses, so its cost is that of the
//! field's distinct values, like a leading wildcard's.

use std::net::IpAddr;

use tantivy_fst::Automaton;

use crate::schema::NAME_END;

/// A span of addresses of one family, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpan {
    v6: bool,
    first: u128,
    last: u128,
}

impl AddressSpan {
    /// A block written as an address and a prefix length (`10.0.0.0/8`,
    /// `2001:db8::/32`); host bits after the prefix are ignored, as
    /// firewalls read `10.1.2.3/8`. `None` when the text is not one.
    pub fn of_block(text: &str) -> Option<AddressSpan> {
        let (address, length) = text.split_once('/')?;
        if length.is_empty() || length.len() > 3 || !length.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let length: u32 = length.parse().ok()?;
        let (v6, value, bits, length) = match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32, length),
            // A block of IPv4 addresses written as IPv6 (`::ffff:10.0.0.0/104`)
            // is the IPv4 block, as such values count as IPv4 ones.
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) if (96..=128).contains(&length) => {
                    (false, u128::from(u32::from(v4)), 32, length - 96)
                }
                _ => (true, u128::from(a), 128, length),
            },
        };
        if length > bits {
            return None;
        }
        // Host bits of the family's width: all of them at /0.
        let host = if length == bits {
            0
        } else {
            (u128::MAX >> (128 - bits)) >> length
        };
        Some(AddressSpan {
            v6,
            first: value & !host,
            last: (value & !host) | host,
        })
    }

    /// The addresses between two bounds (`None` is open), each an address
    /// included or excluded; `None` unless every bound given is an address
    /// and both are of one family. An empty span is `Some` of nothing.
    pub fn between(lower: Option<(&str, bool)>, upper: Option<(&str, bool)>) -> Option<Spanned> {
        let read = |bound: Option<(&str, bool)>| -> Option<Option<(bool, u128, bool)>> {
            match bound {
                None => Some(None),
                Some((text, included)) => {
                    let (v6, value) = address(text)?;
                    Some(Some((v6, value, included)))
                }
            }
        };
        let (lower, upper) = (read(lower)?, read(upper)?);
        let v6 = match (lower, upper) {
            (Some((a, ..)), Some((b, ..))) if a != b => return None,
            (Some((v6, ..)), _) | (_, Some((v6, ..))) => v6,
            (None, None) => return None,
        };
        let top = if v6 { u128::MAX } else { u128::from(u32::MAX) };
        let first = match lower {
            None => Some(0),
            Some((_, value, true)) => Some(value),
            Some((_, value, false)) => value.checked_add(1).filter(|v| *v <= top),
        };
        let last = match upper {
            None => Some(top),
            Some((_, value, true)) => Some(value),
            Some((_, value, false)) => value.checked_sub(1),
        };
        Some(match (first, last) {
            (Some(first), Some(last)) if first <= last => {
                Spanned::Span(AddressSpan { v6, first, last })
            }
            _ => Spanned::Nothing,
        })
    }

    fn holds(&self, text: &str) -> bool {
        match address(text) {
            Some((v6, value)) if v6 == self.v6 => (self.first..=self.last).contains(&value),
            _ => false,
        }
    }
}

/// The usual ways of writing the address `text` is, when it is one: as
/// written, in RFC 5952's form and written out in full, each in lower and
/// upper case, and an IPv4 address also as IPv4-mapped IPv6 (and such an
/// address as IPv4). Matching these exact values finds the address however
/// a log wrote it, at the cost of a few terms rather than a walk over the
/// field's values.
pub fn spellings(text: &str) -> Vec<String> {
    let Ok(parsed) = text.parse::<IpAddr>() else {
        return Vec::new();
    };
    let v4 = match parsed {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    let mut out = Vec::new();
    let v6s = match (v4, parsed) {
        (Some(a), _) => {
            out.push(a.to_string());
            vec![a.to_ipv6_mapped()]
        }
        (None, IpAddr::V6(a)) => vec![a],
        (None, IpAddr::V4(a)) => vec![a.to_ipv6_mapped()],
    };
    for a in v6s {
        let short = a.to_string();
        let full: Vec<String> = a.segments().iter().map(|s| format!("{s:04x}")).collect();
        let bare: Vec<String> = a.segments().iter().map(|s| format!("{s:x}")).collect();
        let mut forms = vec![short, full.join(":"), bare.join(":")];
        // An IPv4 address written as IPv6, its tail in hex or the head
        // written out (`::ffff:a00:eb`, `0:0:0:0:0:ffff:10.0.0.235`).
        if let Some(v4) = v4 {
            let [.., high, low] = a.segments();
            forms.push(format!("::ffff:{high:x}:{low:x}"));
            forms.push(format!("0:0:0:0:0:ffff:{v4}"));
            forms.push(format!("0000:0000:0000:0000:0000:ffff:{v4}"));
        }
        // Each hex group padded to four digits (`2001:0db8::0001`).
        let padded: Vec<String> = forms
            .iter()
            .map(|form| {
                form.split(':')
                    .map(|group| match group.len() {
                        1..=3 if !group.contains('.') => format!("{group:0>4}"),
                        _ => group.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .collect();
        forms.extend(padded);
        for form in forms {
            out.push(form.to_uppercase());
            out.push(form);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What a range of addresses comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spanned {
    Span(AddressSpan),
    /// Bounds that cross (`[10.0.0.9 TO 10.0.0.1]`): no address.
    Nothing,
}

/// An address as its family and number; an IPv4 address written as IPv6
/// (`::ffff:10.0.0.1`) is the IPv4 one, as a dual-stack socket reports it.
fn address(text: &str) -> Option<(bool, u128)> {
    // Longest IPv6 text: eight groups and an IPv4 tail.
    if text.len() > 45 {
        return None;
    }
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some((false, u128::from(u32::from(a)))),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Some((false, u128::from(u32::from(v4)))),
            None => Some((true, u128::from(a))),
        },
    }
}

/// Reads a term's name byte by byte, then keeps its value (no longer than
/// an address can be, of the characters one is written with) to judge it
/// whole: the terms of one name whose value is an address in a span.
#[derive(Debug)]
pub struct InSpan {
    prefix: Vec<u8>,
    span: AddressSpan,
}

impl InSpan {
    /// Values of `name` (terms `name \u{1} value`) in `span`.
    pub fn new(name: &str, span: AddressSpan) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(NAME_END as u8);
        InSpan { prefix, span }
    }
}

const LONGEST: usize = 45;

/// Where a walk is in a term: its name, its value so far, or past both.
#[derive(Clone)]
pub enum State {
    Name(usize),
    Value([u8; LONGEST], u8),
    Dead,
}

impl Automaton for InSpan {
    type State = State;

    fn start(&self) -> State {
        State::Name(0)
    }

    fn is_match(&self, state: &State) -> bool {
        match state {
            State::Value(bytes, len) => std::str::from_utf8(&bytes[..usize::from(*len)])
                .is_ok_and(|text| self.span.holds(text)),
            _ => false,
        }
    }

    fn can_match(&self, state: &State) -> bool {
        !matches!(state, State::Dead)
    }

    fn accept(&self, state: &State, byte: u8) -> State {
        match state {
            State::Name(at) if self.prefix.get(*at) == Some(&byte) => {
                if at + 1 == self.prefix.len() {
                    State::Value([0; LONGEST], 0)
                } else {
                    State::Name(at + 1)
                }
            }
            State::Value(bytes, len)
                if usize::from(*len) < LONGEST
                    && (byte.is_ascii_hexdigit() || byte == b'.' || byte == b':') =>
            {
                let mut bytes = *bytes;
                bytes[usize::from(*len)] = byte;
                State::Value(bytes, len + 1)
            }
            _ => State::Dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(text: &str) -> AddressSpan {
        AddressSpan::of_block(text).unwrap()
    }

    #[test]
    fn blocks_hold_their_addresses_only() {
        let b = span("10.0.0.0/8");
        assert!(b.holds("10.0.0.5") && b.holds("10.255.255.255") && b.holds("::ffff:10.1.2.3"));
        assert!(!b.holds("11.0.0.0") && !b.holds("9.255.255.255") && !b.holds("10.0.0.0/8"));
        let b = span("172.16.0.0/12");
        assert!(b.holds("172.31.255.1") && !b.holds("172.32.0.1") && !b.holds("172.15.0.1"));
        assert!(span("0.0.0.0/0").holds("255.255.255.255"));
        assert!(!span("0.0.0.0/0").holds("2001:db8::1"));
        assert!(span("192.168.1.7/32").holds("192.168.1.7"));
        assert!(!span("192.168.1.7/32").holds("192.168.1.8"));
        // Host bits are ignored, as firewalls read them.
        assert!(span("10.9.9.9/8").holds("10.0.0.1"));
        // IPv4 blocks written as IPv6.
        assert!(span("::ffff:10.0.0.0/104").holds("10.9.9.9"));
        assert!(!span("::ffff:10.0.0.0/104").holds("11.0.0.1"));
        assert!(span("::ffff:0:0/96").holds("192.168.1.1"));
        assert!(span("::ffff:10.1.2.3/128").holds("::FFFF:10.1.2.3"));
        let b = span("2001:db8::/32");
        assert!(b.holds("2001:db8::1") && b.holds("2001:DB8:ffff::") && !b.holds("2001:db9::1"));
        assert!(span("::/0").holds("fe80::1") && !span("::/0").holds("10.0.0.1"));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "/8",
            "10.0.0.0/+8",
            "x/8",
            "::/129",
        ] {
            assert!(AddressSpan::of_block(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_address_is_found_however_it_is_written() {
        let v4 = spellings("10.138.194.242");
        assert!(v4.contains(&"::ffff:10.138.194.242".to_string()), "{v4:?}");
        assert!(v4.contains(&"::FFFF:10.138.194.242".to_string()), "{v4:?}");
        assert!(spellings("::ffff:10.1.2.3").contains(&"10.1.2.3".to_string()));
        for form in [
            "::ffff:a00:eb",
            "::FFFF:A00:EB",
            "0:0:0:0:0:ffff:10.0.0.235",
        ] {
            assert!(
                spellings("10.0.0.235").contains(&form.to_string()),
                "{form}"
            );
            assert!(
                spellings(form).contains(&"10.0.0.235".to_string()),
                "{form}"
            );
        }
        let v6 = spellings("2001:DB8::3FD9");
        for form in [
            "2001:db8::3fd9",
            "2001:DB8::3FD9",
            "2001:0db8:0000:0000:0000:0000:0000:3fd9",
            "2001:db8:0:0:0:0:0:3fd9",
        ] {
            assert!(v6.contains(&form.to_string()), "{form} not in {v6:?}");
        }
        for form in ["2001:0db8::0001", "::ffff:0a01:0203"] {
            let of = if form.contains("ffff") {
                "10.1.2.3"
            } else {
                "2001:db8::1"
            };
            assert!(
                spellings(of).contains(&form.to_string()),
                "{form} not in {:?}",
                spellings(of)
            );
        }
        assert!(spellings("web-01").is_empty() && spellings("10.0.0.0/8").is_empty());
    }

    #[test]
    fn spans_between_bounds() {
        let Some(Spanned::Span(s)) =
            AddressSpan::between(Some(("10.0.0.0", true)), Some(("10.0.0.255", true)))
        else {
            panic!()
        };
        assert!(s.holds("10.0.0.5") && s.holds("10.0.0.255") && !s.holds("10.0.1.0"));
        let Some(Spanned::Span(s)) = AddressSpan::between(Some(("10.0.0.5", false)), None) else {
            panic!()
        };
        assert!(!s.holds("10.0.0.5") && s.holds("10.0.0.6") && s.holds("255.255.255.255"));
        assert_eq!(
            AddressSpan::between(Some(("10.0.0.9", true)), Some(("10.0.0.1", true))),
            Some(Spanned::Nothing)
        );
        assert_eq!(
            AddressSpan::between(Some(("255.255.255.255", false)), None),
            Some(Spanned::Nothing)
        );
        // Not addresses, or of two families: not a span of addresses.
        assert_eq!(AddressSpan::between(Some(("abc", true)), None), None);
        assert_eq!(
            AddressSpan::between(Some(("10.0.0.1", true)), Some(("::1", true))),
            None
        );
        assert_eq!(AddressSpan::between(None, None), None);
    }
}

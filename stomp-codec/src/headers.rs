//! Ordered frame headers that borrow from the read buffer.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

/// Where one header name or value lives.
#[derive(Clone, Debug)]
pub(crate) enum Field {
    /// A range of [`Headers::block`]: the octets as read, no escapes in them.
    Span(Range<usize>),
    /// Its own buffer: an unescaped field, or one added by the application.
    Owned(Bytes),
}

/// One header: a name and a value.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) name: Field,
    pub(crate) value: Field,
}

/// The headers of a frame, in the order they were received or added.
///
/// Decoded headers are ranges of the frame's read buffer: reading one is a
/// slice, not a copy, and [`get_bytes`](Self::get_bytes) hands out a
/// [`Bytes`] that shares the buffer. Only a field that contained escape
/// sequences has a buffer of its own.
///
/// A header may appear more than once; as the specification requires, the
/// **first** occurrence is the one that counts for [`get`](Self::get), and
/// [`iter`](Self::iter) yields all of them.
///
/// ```
/// use stomp_codec::Headers;
///
/// let mut headers = Headers::new();
/// headers.push("destination", "/topic/a");
/// headers.push("destination", "/topic/b");
/// assert_eq!(headers.get("destination"), Some(&b"/topic/a"[..]));
/// assert_eq!(headers.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Headers {
    /// The buffer that `Field::Span`s index into (for a decoded frame, the
    /// whole frame as read; empty for headers built by the application).
    block: Bytes,
    entries: Vec<Entry>,
}

impl Headers {
    /// No headers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// No headers, with room for `capacity` of them.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self { block: Bytes::new(), entries: Vec::with_capacity(capacity) }
    }

    pub(crate) fn from_parts(block: Bytes, entries: Vec<Entry>) -> Self {
        Self { block, entries }
    }

    /// The number of headers, repeated ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn field<'a>(&'a self, field: &'a Field) -> &'a [u8] {
        field_of(&self.block, field)
    }

    fn field_bytes(&self, field: &Field) -> Bytes {
        match field {
            Field::Span(range) => self.block.slice(range.clone()),
            Field::Owned(bytes) => bytes.clone(),
        }
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| self.field(&e.name) == name)
    }

    /// The value of the first header called `name`.
    #[must_use]
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let i = self.position(name.as_ref())?;
        Some(self.field(&self.entries[i].value))
    }

    /// The value of the first header called `name`, if it is UTF-8. A value
    /// that is not UTF-8 gives `None`, as an absent one does; use
    /// [`get`](Self::get) to tell them apart.
    #[must_use]
    pub fn get_str(&self, name: impl AsRef<[u8]>) -> Option<&str> {
        std::str::from_utf8(self.get(name)?).ok()
    }

    /// The value of the first header called `name` as a [`Bytes`] that
    /// shares the frame's buffer (no copy).
    ///
    /// Keeping it alive keeps the whole read buffer it came from alive:
    /// copy it (`Bytes::copy_from_slice`) before storing it for long.
    #[must_use]
    pub fn get_bytes(&self, name: impl AsRef<[u8]>) -> Option<Bytes> {
        let i = self.position(name.as_ref())?;
        Some(self.field_bytes(&self.entries[i].value))
    }

    /// Whether a header called `name` is present.
    #[must_use]
    pub fn contains(&self, name: impl AsRef<[u8]>) -> bool {
        self.position(name.as_ref()).is_some()
    }

    /// Every header in order, repeated ones included.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.entries.iter().map(|e| (self.field(&e.name), self.field(&e.value)))
    }

    /// Appends a header. An existing header of that name keeps precedence.
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.entries
            .push(Entry { name: Field::Owned(name.into()), value: Field::Owned(value.into()) });
    }

    /// Sets the value of header `name`: the first occurrence is replaced in
    /// place, later ones are removed, and the header is appended when absent.
    pub fn set(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        let value = Field::Owned(value.into());
        let Some(first) = self.position(&name) else {
            self.entries.push(Entry { name: Field::Owned(name), value });
            return;
        };
        let block = &self.block;
        let mut index = 0;
        self.entries.retain(|e| {
            let keep = index <= first || field_of(block, &e.name) != &name[..];
            index += 1;
            keep
        });
        self.entries[first].value = value;
    }

    /// Removes every header called `name` and returns the value of the
    /// first one.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) -> Option<Bytes> {
        let name = name.as_ref();
        let first = self.get_bytes(name);
        let block = &self.block;
        self.entries.retain(|e| field_of(block, &e.name) != name);
        first
    }
}

fn field_of<'a>(block: &'a Bytes, field: &'a Field) -> &'a [u8] {
    match field {
        Field::Span(range) => &block[range.clone()],
        Field::Owned(bytes) => bytes,
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Self::new();
        for (name, value) in iter {
            headers.push(name, value);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_first_and_drops_repeats() {
        let mut h: Headers = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        h.set("a", "9");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(&b"a"[..], &b"9"[..]), (b"b", b"2")]);
        h.set("c", "4");
        assert_eq!(h.get("c"), Some(&b"4"[..]));
    }

    #[test]
    fn remove_returns_first_and_removes_all() {
        let mut h: Headers = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(h.remove("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(h.len(), 1);
        assert_eq!(h.remove("zz"), None);
    }

    #[test]
    fn spans_read_from_the_block() {
        let block = Bytes::from_static(b"name:value");
        let h = Headers::from_parts(
            block,
            vec![Entry { name: Field::Span(0..4), value: Field::Span(5..10) }],
        );
        assert_eq!(h.get_str("name"), Some("value"));
        assert_eq!(&h.get_bytes("name").unwrap()[..], b"value");
    }
}

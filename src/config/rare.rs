//! Parts of a job's configuration that most jobs leave empty (hooks, custom commands,
//! checks, limits, alert recipients): a daemon holds one spec per job, and with
//! thousands of jobs their empty values were most of its memory. [`Rare`] holds such a
//! part behind a pointer only once it is set; an empty one is 8 bytes and reads as the
//! type's empty value.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A type with an empty value that can be shared by every empty [`Rare`].
pub trait Empty: Default + PartialEq + 'static {
    const EMPTY: &'static Self;
}

impl<T: PartialEq + 'static> Empty for Vec<T> {
    const EMPTY: &'static Self = &Vec::new();
}

impl<K: Ord + 'static, V: PartialEq + 'static> Empty for BTreeMap<K, V> {
    const EMPTY: &'static Self = &BTreeMap::new();
}

/// `T`, allocated only when it differs from its empty value. Read through `Deref`;
/// writing through `DerefMut` allocates it.
#[derive(Clone, PartialEq)]
pub struct Rare<T: Empty>(Option<Box<T>>);

impl<T: Empty> Rare<T> {
    pub fn new(value: T) -> Self {
        if value == *T::EMPTY {
            Rare(None)
        } else {
            Rare(Some(Box::new(value)))
        }
    }

    /// The value to change in place, if it was ever set.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }
}

impl<T: Empty> Default for Rare<T> {
    fn default() -> Self {
        Rare(None)
    }
}

impl<T: Empty> From<T> for Rare<T> {
    fn from(value: T) -> Self {
        Rare::new(value)
    }
}

impl<T: Empty> Deref for Rare<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

impl<T: Empty> DerefMut for Rare<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<'a, T: Empty> IntoIterator for &'a Rare<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        (**self).into_iter()
    }
}

impl<T: Empty + fmt::Debug> fmt::Debug for Rare<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_not_allocated_and_reads_as_empty() {
        let mut r: Rare<Vec<u32>> = Rare::new(Vec::new());
        assert!(r.0.is_none() && r.is_empty());
        assert!(r.get_mut().is_none());
        assert_eq!(r, Rare::default());
        r.push(7);
        assert_eq!(*r, vec![7]);
        assert_eq!(Rare::new(vec![7]), r);
        assert_ne!(r, Rare::default());
        assert_eq!(format!("{r:?}"), "[7]");
        assert_eq!(std::mem::size_of::<Rare<BTreeMap<String, String>>>(), 8);
    }
}

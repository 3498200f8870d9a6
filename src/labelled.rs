//! `labelled!`: a small enum whose variants each have a label (the name
//! /metrics and /status show) and an index (their order: a place in an array
//! of counters, or the value kept in an `AtomicU8`).
//!
//! Must never: be used for an enum whose variants carry data.

/// Defines the enum with `ALL` (every variant, in order), `name()` and
/// `from_index()` (the last variant for an index past the end, so a value
/// read back from an atomic is always some variant).
macro_rules! labelled {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        #[allow(dead_code)] // not every enum needs every accessor
        impl $name {
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            pub fn from_index(i: usize) -> $name {
                let [.., last] = $name::ALL;
                $name::ALL.get(i).copied().unwrap_or(last)
            }
        }
    };
}

//! Safety numbers.

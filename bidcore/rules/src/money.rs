//! Money, time and the bounds every value is checked against.

/// Integer kobo (₦1 = 100 kobo). Never a float.
pub type Kobo = i64;
/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// Exclusive upper bound of a bid amount and of any price: 10^15 kobo.
pub const MAX_AMOUNT: Kobo = 1_000_000_000_000_000;
/// Exclusive upper bound of a wallet balance.
pub const MAX_BALANCE: Kobo = 1_000_000_000_000_000_000;
/// 9999-12-31T23:59:59.999Z: the latest time the core accepts.
pub const MAX_TIME_MS: Millis = 253_402_300_799_999;
/// Deposit percentages are basis points, 10000 = 100 %.
pub const MAX_BASIS_POINTS: u32 = 10_000;
/// Anti-sniping window and extension are at most 7 days.
pub const MAX_SNIPE_MS: Millis = 7 * 24 * 3_600_000;
/// An auction has at most this many seller ids (created_by, listed_by, owner_id, …).
pub const MAX_SELLERS: usize = 8;
/// Shards are numbered in a 64-bit mask when batches are grouped.
pub const MAX_SHARDS: usize = 64;
/// Reserve protection acts only in an auction's last hour.
pub const RESERVE_PROTECTION_HORIZON_MS: Millis = 3_600_000;

/// `0 < amount < 10^15`.
#[inline]
pub fn is_valid_amount(amount: Kobo) -> bool {
    amount > 0 && amount < MAX_AMOUNT
}

/// The deposit a bid of `amount` commits: `ceil(amount * bp / 10000)`.
///
/// Exact in integers for every amount below 10^15 and every bp up to 10000
/// (the product stays below 2^64; i128 keeps it obviously so).
#[inline]
pub fn deposit(amount: Kobo, deposit_bp: u32) -> Kobo {
    let scaled = i128::from(amount.max(0)) * i128::from(deposit_bp);
    let whole = (scaled + i128::from(MAX_BASIS_POINTS) - 1) / i128::from(MAX_BASIS_POINTS);
    // amount < 10^15 and bp <= 10^4 keep this far inside i64.
    Kobo::try_from(whole).unwrap_or(Kobo::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_rounds_up_to_the_next_kobo() {
        assert_eq!(deposit(1, 2000), 1);
        assert_eq!(deposit(5, 2000), 1);
        assert_eq!(deposit(6, 2000), 2);
        assert_eq!(deposit(10_000, 2000), 2000);
    }

    #[test]
    fn deposit_is_exact_at_the_largest_amount() {
        assert_eq!(deposit(MAX_AMOUNT - 1, 10_000), MAX_AMOUNT - 1);
        assert_eq!(deposit(MAX_AMOUNT - 1, 1), 100_000_000_000);
    }

    #[test]
    fn zero_percent_deposit_is_zero() {
        assert_eq!(deposit(123_456, 0), 0);
    }

    #[test]
    fn amounts_must_be_positive_and_below_ten_to_the_fifteen() {
        assert!(!is_valid_amount(0));
        assert!(!is_valid_amount(-1));
        assert!(is_valid_amount(1));
        assert!(is_valid_amount(MAX_AMOUNT - 1));
        assert!(!is_valid_amount(MAX_AMOUNT));
    }
}

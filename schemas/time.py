"""Time units: the one definition of the integer conversion factors (DESIGN §2.1: 365-day year)."""

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_HOUR = 3_600 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
NS_PER_YEAR = 365 * NS_PER_DAY
MS_PER_YEAR = NS_PER_YEAR // NS_PER_MS

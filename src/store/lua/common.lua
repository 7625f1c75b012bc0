-- Shared by every script below (prepended in Rust).
--
-- Versions travel and are stored as decimal strings and are compared as strings, so they stay
-- exact over the whole u64 range: Lua numbers are doubles and would round above 2^53.

-- The version text without leading zeros, or nil when it is not a decimal integer.
local function canonical(raw)
  if not string.match(raw, '^%d+$') then
    return nil
  end
  return (string.gsub(raw, '^0+(%d)', '%1'))
end

-- a < b for canonical version strings.
local function less(a, b)
  return #a < #b or (#a == #b and a < b)
end

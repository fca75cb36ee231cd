-- redis-lua baseline: open (拆) — the split and the dedupe in one script,
-- which Redis runs atomically. With appendonly yes and appendfsync always,
-- Redis writes the script's effects to the AOF and fsyncs before it replies.
-- KEYS[1] the envelope hash, KEYS[2] its opens hash (user -> "amount:seq").
-- ARGV[1] the user, ARGV[2] a random integer in [0, 2^31) from the client
-- (Lua 5.1 numbers are doubles: below 2^31 the modulo is exact).
-- Returns {1, amount, seq} a new share, {2, "amount:seq"} this user's
-- earlier share, {-3} no such envelope, {-4} not paid, {-6} exhausted.
local mine = redis.call('HGET', KEYS[2], ARGV[1])
if mine then
  return {2, mine}
end
local st = redis.call('HMGET', KEYS[1], 'status', 'kind', 'total_fen',
                      'count', 'remaining_fen', 'remaining_count')
if not st[1] then
  return {-3}
end
local status = tonumber(st[1])
local left = tonumber(st[6])
if status == 1 then
  return {-4}
end
if status ~= 2 or left == 0 then
  return {-6}
end
local total, count, remaining = tonumber(st[3]), tonumber(st[4]), tonumber(st[5])
local share
if tonumber(st[2]) == 2 then
  -- Equal: total / count, the remainder one fen each to the first shares.
  share = math.floor(total / count)
  if count - left < total % count then
    share = share + 1
  end
elseif left == 1 then
  share = remaining
else
  -- Double mean: uniform in [1, floor(2 * remaining / left) - 1].
  local hi = math.floor(2 * remaining / left) - 1
  share = 1 + tonumber(ARGV[2]) % hi
end
local seq = count - left + 1
redis.call('HSET', KEYS[2], ARGV[1], share .. ':' .. seq)
local next_status = 2
if left == 1 then
  next_status = 3
end
redis.call('HSET', KEYS[1], 'remaining_fen', remaining - share,
           'remaining_count', left - 1, 'status', next_status)
return {1, share, seq}

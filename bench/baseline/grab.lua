-- redis-lua baseline: the cheap check (抢); changes nothing.
-- KEYS[1] the envelope hash, KEYS[2] its opens hash (user -> "amount:seq").
-- ARGV[1] the user.
-- Returns {1, left} can open, {2, "amount:seq"} already opened,
-- {3, 0} exhausted, {5, left} not paid, {-3} no such envelope.
local mine = redis.call('HGET', KEYS[2], ARGV[1])
if mine then
  return {2, mine}
end
local st = redis.call('HMGET', KEYS[1], 'status', 'remaining_count')
if not st[1] then
  return {-3}
end
local status, left = tonumber(st[1]), tonumber(st[2])
if status == 1 then
  return {5, left}
end
if left == 0 then
  return {3, 0}
end
return {1, left}

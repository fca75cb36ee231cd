-- redis-lua baseline: the payment system confirms (发); idempotent per txn.
-- KEYS[1] the envelope hash. ARGV[1] the payment txn.
-- Returns 1 paid (now or before with this txn), -3 no such envelope,
-- -5 paid with another txn.
local st = redis.call('HMGET', KEYS[1], 'status', 'payment_txn')
if not st[1] then
  return -3
end
if tonumber(st[1]) == 1 then
  redis.call('HSET', KEYS[1], 'status', 2, 'payment_txn', ARGV[1])
  return 1
end
if st[2] == ARGV[1] then
  return 1
end
return -5

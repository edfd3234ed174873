-- One namespace for the payment provider's references.
--
-- A wallet credit, a withdrawal and a settlement payment each carry the
-- provider's reference as their idempotency key. They were kept apart
-- ('deposit:R', 'withdrawal:R', 'payment:R'), so one reference could be booked
-- twice, once as a credit and once as a payment. From now on every one is
-- 'provider:R' and the unique key on idempotency_key refuses the second use of
-- R whatever its kind (engine/references.py).
--
-- Existing rows are renamed. If one reference was already used under two kinds
-- this fails on transactions_idempotency_key_key, naming it: such a pair is
-- exactly the double booking this closes, and needs a person to resolve it.
UPDATE transactions
SET idempotency_key = 'provider:' || substr(idempotency_key, strpos(idempotency_key, ':') + 1)
WHERE idempotency_key ~ '^(deposit|withdrawal|payment):';

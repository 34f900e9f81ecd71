-- +goose Up
-- Emails are stored in Unicode normal form C (authsvc.NormaliseEmail), so
-- that an accented address typed composed or decomposed is one account.
-- Addresses stored before that are put in that form here; two accounts
-- that differ only in it stop the migration for the operator to settle.
-- normalize() needs a UTF8 database; other encodings hold no such forms.
-- +goose StatementBegin
DO $$
DECLARE
    clash text;
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RETURN;
    END IF;
    SELECT string_agg(a.email || ' / ' || b.email, ', ') INTO clash
    FROM auth.users a JOIN auth.users b ON a.id < b.id AND normalize(a.email, NFC) = normalize(b.email, NFC);
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'accounts whose emails differ only in Unicode form: %; rename or deactivate one of each pair (UPDATE auth.users SET email = ...) and start again', clash;
    END IF;
    UPDATE auth.users SET email = normalize(email, NFC) WHERE email IS NOT NFC NORMALIZED;
END $$;
-- +goose StatementEnd

-- +goose Down
-- Nothing to undo: the normal form is the same address.
SELECT 1;

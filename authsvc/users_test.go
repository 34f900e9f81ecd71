package authsvc

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestMe(t *testing.T) {
	ctx := context.Background()
	u := newUser(t, "user")
	tok := env.token(t, u)
	r := env.get(t, "/api/users/me", tok).expect(t, http.StatusOK)
	var me struct {
		User
		Groups []string `json:"groups"`
	}
	r.Decode(t, &me)
	if me.ID != u.ID || me.Email != u.Email || me.Role != "user" || !me.IsActive || me.IsSuperuser {
		t.Errorf("/me %+v, want %+v", me.User, u)
	}
	if me.FullName == nil || *me.FullName != "Fixture user" {
		t.Errorf("full_name %v", me.FullName)
	}
	if me.Groups == nil || len(me.Groups) != 0 {
		t.Errorf("groups %#v, want [] for a user in no group", me.Groups)
	}
	if strings.Contains(string(r.Body), "argon2") || strings.Contains(string(r.Body), "hashed_password") {
		t.Errorf("/me leaks the password hash: %s", r.Body)
	}

	var names []string
	for _, n := range []string{"zeta-" + u.ID.String()[:6], "Alpha-" + u.ID.String()[:6]} {
		g, err := env.svc.store.CreateGroup(ctx, n, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.svc.store.AddMember(ctx, g.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	// Membership changes void the old token; a new one sees the groups.
	env.get(t, "/api/users/me", tok).expect(t, http.StatusUnauthorized)
	tok = env.token(t, u)
	env.get(t, "/api/users/me", tok).expect(t, http.StatusOK).Decode(t, &me)
	if want := []string{names[1], names[0]}; !reflect.DeepEqual(me.Groups, want) {
		t.Errorf("groups %v, want %v (sorted by name)", me.Groups, want)
	}
}

func TestPreferences(t *testing.T) {
	u := newUser(t, "user")
	tok := env.token(t, u)
	get := func() []string {
		t.Helper()
		var p struct {
			AppIDs []string `json:"app_ids"`
		}
		env.get(t, "/api/users/me/preferences", tok).expect(t, http.StatusOK).Decode(t, &p)
		return p.AppIDs
	}
	if ids := get(); ids == nil || len(ids) != 0 {
		t.Errorf("default app_ids %#v, want []", ids)
	}
	patch := func(body any) *response {
		t.Helper()
		return env.do(t, req{Method: http.MethodPatch, Path: "/api/users/me/preferences", Token: tok, Body: body})
	}
	r := patch(map[string]any{"app_ids": []string{"docs", "mail", "docs", "crm_2", "mail", "a"}}).expect(t, http.StatusOK)
	want := []string{"docs", "mail", "crm_2", "a"}
	var p struct {
		AppIDs []string `json:"app_ids"`
	}
	r.Decode(t, &p)
	if !reflect.DeepEqual(p.AppIDs, want) {
		t.Errorf("PATCH answered %v, want %v (deduplicated, first occurrences in order)", p.AppIDs, want)
	}
	if ids := get(); !reflect.DeepEqual(ids, want) {
		t.Errorf("stored %v, want %v", ids, want)
	}

	fifty := make([]string, 50)
	for i := range fifty {
		fifty[i] = fmt.Sprintf("app-%d", i)
	}
	patch(map[string]any{"app_ids": append(fifty, fifty...)}).expect(t, http.StatusOK) // 100 ids, 50 distinct
	if ids := get(); len(ids) != 50 {
		t.Errorf("%d ids stored, want 50", len(ids))
	}

	tests := []struct {
		name  string
		body  any
		parts []string
	}{
		{"51 distinct ids", map[string]any{"app_ids": append(fifty, "one-more")}, []string{"app_ids", "at most 50"}},
		{"bad slug with a space", map[string]any{"app_ids": []string{"ok", "Bad Slug"}}, []string{"app_ids[1]"}},
		{"path traversal", map[string]any{"app_ids": []string{"../x"}}, []string{"app_ids[0]"}},
		{"empty id", map[string]any{"app_ids": []string{"docs", "mail", ""}}, []string{"app_ids[2]"}},
		{"upper case", map[string]any{"app_ids": []string{"Docs"}}, []string{"app_ids[0]"}},
		{"leading dash", map[string]any{"app_ids": []string{"-docs"}}, []string{"app_ids[0]"}},
		{"too long", map[string]any{"app_ids": []string{strings.Repeat("a", 65)}}, []string{"app_ids[0]"}},
		{"several bad", map[string]any{"app_ids": []string{"x/y", "ok", "a b"}}, []string{"app_ids[0]", "app_ids[2]"}},
		{"missing app_ids", map[string]any{}, []string{"app_ids: is required"}},
		{"null app_ids", `{"app_ids": null}`, []string{"app_ids: is required"}},
		{"not an array", map[string]any{"app_ids": "docs"}, []string{"app_ids", "array"}},
		{"array of numbers", map[string]any{"app_ids": []int{1, 2}}, []string{"app_ids"}},
		{"not an object", `["docs"]`, []string{"object"}},
		{"malformed JSON", `{"app_ids": [`, []string{"malformed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			patch(tt.body).expectError(t, http.StatusBadRequest, tt.parts...)
		})
	}
	if ids := get(); len(ids) != 50 || ids[0] != "app-0" {
		t.Errorf("refused updates changed the preferences: %v", ids)
	}
	patch(map[string]any{"app_ids": []string{}}).expect(t, http.StatusOK)
	if ids := get(); len(ids) != 0 {
		t.Errorf("after clearing: %v", ids)
	}
	env.get(t, "/api/users/me/preferences", "").expect(t, http.StatusUnauthorized)
	env.do(t, req{Method: http.MethodPatch, Path: "/api/users/me/preferences", Body: map[string]any{"app_ids": []string{}}}).
		expect(t, http.StatusUnauthorized)
}

func TestProfile(t *testing.T) {
	u := newUser(t, "user")
	tok := env.token(t, u)
	fields := []string{"phone", "job_title", "department", "location", "bio", "avatar_url", "timezone", "locale"}

	p := env.get(t, "/api/profile", tok).expect(t, http.StatusOK).JSON(t)
	if p["user_id"] != u.ID.String() || p["email"] != u.Email || p["full_name"] != "Fixture user" {
		t.Errorf("profile %v", p)
	}
	for _, f := range fields {
		if v, ok := p[f]; !ok || v != nil {
			t.Errorf("new profile %s = %v (present %v), want null", f, v, ok)
		}
	}
	put := func(body any) *response {
		t.Helper()
		return env.do(t, req{Method: http.MethodPut, Path: "/api/profile", Token: tok, Body: body})
	}
	full := map[string]any{
		"full_name": "Ada Lovelace", "phone": "+44 (20) 7946-0958", "job_title": "Analyst", "department": "Engines",
		"location": "London", "bio": "Line one\nLine two\tindented", "avatar_url": "https://example.com/a.png",
		"timezone": "Europe/London", "locale": "en-GB",
	}
	p = put(full).expect(t, http.StatusOK).JSON(t)
	for k, v := range full {
		if p[k] != v {
			t.Errorf("after PUT %s = %v, want %v", k, p[k], v)
		}
	}
	// A partial update keeps what it does not name; trims what it sets.
	p = put(map[string]any{"job_title": "  Engineer  ", "unknown_field": "ignored"}).expect(t, http.StatusOK).JSON(t)
	if p["job_title"] != "Engineer" || p["phone"] != full["phone"] || p["bio"] != full["bio"] || p["full_name"] != "Ada Lovelace" {
		t.Errorf("partial update: %v", p)
	}
	// null and "" clear; whitespace only clears too.
	p = put(map[string]any{"phone": nil, "bio": "", "location": "   "}).expect(t, http.StatusOK).JSON(t)
	if p["phone"] != nil || p["bio"] != nil || p["location"] != nil || p["department"] != "Engines" {
		t.Errorf("clearing: %v", p)
	}
	// GET shows the same, and /me shows the new full_name.
	g := env.get(t, "/api/profile", tok).expect(t, http.StatusOK).JSON(t)
	if g["job_title"] != "Engineer" || g["phone"] != nil || g["timezone"] != "Europe/London" {
		t.Errorf("GET after PUT: %v", g)
	}
	if me := env.get(t, "/api/users/me", tok).JSON(t); me["full_name"] != "Ada Lovelace" {
		t.Errorf("/me full_name %v", me["full_name"])
	}
	// Fields that are not the profile's cannot be set through it.
	other := newUser(t, "user")
	p = put(map[string]any{"email": "evil@example.com", "user_id": other.ID, "role": "admin", "updated_at": "2000-01-01T00:00:00Z"}).
		expect(t, http.StatusOK).JSON(t)
	if p["email"] != u.Email || p["user_id"] != u.ID.String() {
		t.Errorf("PUT changed identity fields: %v", p)
	}
	if cur, err := env.svc.store.UserByID(context.Background(), u.ID); err != nil || cur.Role != "user" || cur.Email != u.Email {
		t.Errorf("PUT /api/profile changed the account: %+v %v", cur, err)
	}
	// An empty object changes nothing.
	p = put(map[string]any{}).expect(t, http.StatusOK).JSON(t)
	if p["job_title"] != "Engineer" {
		t.Errorf("empty PUT changed the profile: %v", p)
	}

	tests := []struct {
		name  string
		body  any
		parts []string
	}{
		{"bad phone letters", map[string]any{"phone": "call me"}, []string{"phone: must be a phone number"}},
		{"phone too few digits", map[string]any{"phone": "+1 23"}, []string{"phone:"}},
		{"phone too many digits", map[string]any{"phone": "1234567890123456"}, []string{"phone:"}},
		{"phone too long", map[string]any{"phone": "+1 " + strings.Repeat("2", 40)}, []string{"phone:"}},
		{"javascript avatar", map[string]any{"avatar_url": "javascript:alert(1)"}, []string{"avatar_url: must be an http(s) URL"}},
		{"data avatar", map[string]any{"avatar_url": "data:image/png;base64,AAAA"}, []string{"avatar_url:"}},
		{"relative avatar", map[string]any{"avatar_url": "/a.png"}, []string{"avatar_url:"}},
		{"hostless avatar", map[string]any{"avatar_url": "https://"}, []string{"avatar_url:"}},
		{"unknown timezone", map[string]any{"timezone": "Mars/Olympus"}, []string{"timezone: must be an IANA time zone"}},
		{"Local timezone", map[string]any{"timezone": "Local"}, []string{"timezone:"}},
		{"timezone path traversal", map[string]any{"timezone": "../../etc/passwd"}, []string{"timezone:"}},
		{"bad locale", map[string]any{"locale": "english please"}, []string{"locale: must be a language tag"}},
		{"locale with underscore", map[string]any{"locale": "en_GB"}, []string{"locale:"}},
		{"bio too long", map[string]any{"bio": strings.Repeat("b", 2001)}, []string{"bio: must be at most 2000 characters"}},
		{"full_name too long", map[string]any{"full_name": strings.Repeat("é", 201)}, []string{"full_name: must be at most 200"}},
		{"control character in job_title", map[string]any{"job_title": "a\x00b"}, []string{"job_title: must not contain control characters"}},
		{"newline in location", map[string]any{"location": "a\nb"}, []string{"location: must not contain control characters"}},
		{"escape in bio", map[string]any{"bio": "a\x1b[31mred"}, []string{"bio: must not contain control characters"}},
		{"number", map[string]any{"phone": 5551234567}, []string{"phone: must be a string or null"}},
		{"object", map[string]any{"department": map[string]any{}}, []string{"department: must be a string or null"}},
		{"boolean", map[string]any{"locale": true}, []string{"locale: must be a string or null"}},
		{"every bad field named", map[string]any{"phone": "x", "timezone": "Nowhere/Else", "avatar_url": "ftp://x", "locale": "-", "bio": 1},
			[]string{"phone:", "timezone:", "avatar_url:", "locale:", "bio:"}},
		{"not an object", `"text"`, []string{"object"}},
		{"malformed JSON", `{"bio": "x"`, []string{"malformed"}},
		{"empty body", ``, []string{"empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			put(tt.body).expectError(t, http.StatusBadRequest, tt.parts...)
		})
	}
	// A refused update changes nothing, even in its valid fields.
	put(map[string]any{"job_title": "Changed", "phone": "nope"}).expect(t, http.StatusBadRequest)
	if g := env.get(t, "/api/profile", tok).JSON(t); g["job_title"] != "Engineer" {
		t.Errorf("a refused PUT changed job_title to %v", g["job_title"])
	}
	env.do(t, req{Method: http.MethodPut, Path: "/api/profile", Token: tok, Body: `{"bio": "x"}`, ContentType: "text/plain"}).
		expect(t, http.StatusUnsupportedMediaType)
	env.get(t, "/api/profile", "").expect(t, http.StatusUnauthorized)
}

package docservice

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"

	"github.com/gatehouse/gatehouse/internal/httpx"
)

// Categories are global: one folder tree shared by every user (the watched
// folder's subfolders map onto it). Any user may list them and create one;
// renaming or deleting, which moves other users' files, is for the
// category's creator and for managers (admins, doc-service-admin).

func (s *Service) listCategories(w http.ResponseWriter, r *http.Request) error {
	cats, err := s.store.ListCategories(r.Context())
	if err != nil {
		return storeError(err, "category")
	}
	if cats == nil {
		cats = []Category{}
	}
	httpx.WriteJSON(w, http.StatusOK, cats)
	return nil
}

// categoryName validates and sanitises a category (folder) name.
func categoryName(raw *string) (string, *httpx.FieldError) {
	if raw == nil || strings.TrimSpace(*raw) == "" {
		return "", &httpx.FieldError{Field: "name", Message: "is required"}
	}
	if strings.ContainsAny(*raw, `/\`) {
		return "", &httpx.FieldError{Field: "name", Message: "must be one folder name (nest with parent_id)"}
	}
	name := SanitizeName(*raw, "")
	if name == "" || strings.EqualFold(name, tmpDir) {
		return "", &httpx.FieldError{Field: "name", Message: "is not usable as a folder name"}
	}
	// Documents' files are named *.pdf in the same folders: a category
	// "x.pdf" and a document x.pdf would claim one path, and whichever
	// came second could never be written.
	if len(name) >= 4 && strings.EqualFold(name[len(name)-4:], ".pdf") {
		return "", &httpx.FieldError{Field: "name", Message: "must not end in .pdf (documents' file names do)"}
	}
	return name, nil
}

func pathTooLong(field string) error {
	return httpx.Invalid([]httpx.FieldError{{Field: field,
		Message: fmt.Sprintf("the folder path (or a sub-category's) would be longer than %d bytes", MaxCategoryPathBytes)}})
}

func (s *Service) createCategory(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name     *string          `json:"name"`
		ParentID optional[string] `json:"parent_id"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	var fields []httpx.FieldError
	name, fe := categoryName(req.Name)
	if fe != nil {
		fields = append(fields, *fe)
	}
	_, parent, fe := idField("parent_id", req.ParentID)
	if fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	p := principal(r)
	c, err := s.store.CreateCategory(r.Context(), p.ID, p.Manager(), parent, name)
	switch {
	case errors.Is(err, ErrTooMany):
		return &httpx.Error{Status: http.StatusConflict, Code: "too_many_categories",
			Detail: fmt.Sprintf("no more categories: at most %d in all, and %d created by one user who is not a manager; delete unused ones first",
				maxCategories, maxCategoriesPerUser)}
	case errors.Is(err, ErrNameTaken):
		return httpx.Errorf(http.StatusConflict, "a category named %q already exists there", name)
	case errors.Is(err, ErrNotFound):
		return httpx.Invalid([]httpx.FieldError{{Field: "parent_id", Message: "no such category"}})
	case errors.Is(err, ErrPathTooLong):
		return pathTooLong("name")
	case err != nil:
		return storeError(err, "category")
	}
	w.Header().Set("Location", "/api/documents/categories/"+c.ID.String())
	httpx.WriteJSON(w, http.StatusCreated, c)
	return nil
}

// mayChange reports whether p may rename, move or delete c.
func mayChange(p *Principal, c Category) bool {
	return p.Manager() || (c.CreatedBy != nil && *c.CreatedBy == p.ID)
}

func (s *Service) patchCategory(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req struct {
		Name     optional[string] `json:"name"`
		ParentID optional[string] `json:"parent_id"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 0); err != nil {
		return err
	}
	if !req.Name.Set && !req.ParentID.Set {
		return nothingToChange("name", "parent_id")
	}
	var fields []httpx.FieldError
	var name *string
	// "name": null leaves the name as it is, as it always did.
	if req.Name.Set && req.Name.Value != nil {
		n, fe := categoryName(req.Name.Value)
		if fe != nil {
			fields = append(fields, *fe)
		}
		name = &n
	}
	parentSet, parent, fe := idField("parent_id", req.ParentID)
	if fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return httpx.Invalid(fields)
	}
	c, err := s.store.GetCategory(r.Context(), id)
	if err != nil {
		return storeError(err, "category")
	}
	if !mayChange(principal(r), c) {
		return httpx.Errorf(http.StatusForbidden, "only the category's creator or a doc-service administrator may change it")
	}
	c, err = s.store.UpdateCategory(r.Context(), id, name, parentSet, parent,
		func(oldPath, newPath string) error {
			if err := s.files.MoveDir(oldPath, newPath); err != nil && !errors.Is(err, ErrTargetExists) {
				return &fileError{err}
			} else if err != nil {
				return err
			}
			return nil
		})
	switch {
	case errors.Is(err, ErrNameTaken), errors.Is(err, ErrTargetExists):
		return httpx.Errorf(http.StatusConflict, "a category or folder with that name already exists there")
	case errors.Is(err, ErrInvalidMove):
		return httpx.Invalid([]httpx.FieldError{{Field: "parent_id", Message: "cannot move a category into itself or one of its sub-categories"}})
	case errors.Is(err, ErrNotFound) && strings.HasPrefix(err.Error(), "parent"):
		return httpx.Invalid([]httpx.FieldError{{Field: "parent_id", Message: "no such category"}})
	case errors.Is(err, ErrPathTooLong):
		field := "name"
		if req.ParentID.Set {
			field = "parent_id"
		}
		return pathTooLong(field)
	case err != nil:
		return storeError(err, "category")
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (s *Service) deleteCategory(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	c, err := s.store.GetCategory(r.Context(), id)
	if err != nil {
		return storeError(err, "category")
	}
	if !mayChange(principal(r), c) {
		return httpx.Errorf(http.StatusForbidden, "only the category's creator or a doc-service administrator may delete it")
	}
	err = s.store.DeleteCategory(r.Context(), id, func(path string) error {
		if err := s.files.RemoveEmptyDir(path); err != nil {
			return &fileError{err}
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotEmpty):
		return &httpx.Error{Status: http.StatusConflict, Code: "category_not_empty",
			Detail: "the category holds documents or sub-categories (archived documents count: their files are kept; so do other users' documents, which only they or an administrator can see and move); move them first", Cause: err}
	case errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
		return &httpx.Error{Status: http.StatusConflict, Code: "folder_not_empty",
			Detail: "the category's folder holds files that are not documents; it is kept until they are moved", Cause: err}
	case err != nil:
		return storeError(err, "category")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

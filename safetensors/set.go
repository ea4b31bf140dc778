package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"persona/tensor"
)

// IndexName is the file that maps tensor names to shards in a sharded
// Hugging Face checkpoint.
const IndexName = "model.safetensors.index.json"

// Set is a checkpoint's tensors seen as one collection, whether they lie in
// one file or in shards, so that model loading does not care how the
// checkpoint was split.
type Set struct {
	Dir   string
	files []*File
	where map[string]*File
	names []string
}

// OpenSet opens the checkpoint in dir: the shards named by
// model.safetensors.index.json if present (every shard must exist and hold
// the tensors the index assigns to it), else model.safetensors, else the
// only *.safetensors file. dir may also name a .safetensors file directly.
// With an index, Names lists exactly the index's tensors; anything else a
// shard holds is not part of the checkpoint and is ignored.
func OpenSet(dir string) (*Set, error) {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return single(filepath.Dir(dir), dir)
	}
	idx := filepath.Join(dir, IndexName)
	if _, err := os.Stat(idx); err == nil {
		return openIndexed(dir, idx)
	}
	if one := filepath.Join(dir, "model.safetensors"); fileExists(one) {
		return single(dir, one)
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", dir, err)
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("safetensors %s: no %s, model.safetensors or other *.safetensors file", dir, IndexName)
	case 1:
		return single(dir, matches[0])
	}
	for i := range matches {
		matches[i] = filepath.Base(matches[i])
	}
	return nil, fmt.Errorf("safetensors %s: %d .safetensors files (%s) but no %s to say how they fit together", dir, len(matches), strings.Join(matches, ", "), IndexName)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func single(dir, path string) (*Set, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	s := &Set{Dir: dir, files: []*File{f}, where: map[string]*File{}, names: f.Names()}
	for _, n := range s.names {
		s.where[n] = f
	}
	return s, nil
}

// maxIndexBytes bounds the index file; real ones are well under 1 MB.
const maxIndexBytes = 64 << 20

func openIndexed(dir, idx string) (_ *Set, err error) {
	st, err := os.Stat(idx)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", idx, err)
	}
	if st.Size() > maxIndexBytes {
		return nil, fmt.Errorf("safetensors %s: index of %d bytes exceeds the %d-byte limit", idx, st.Size(), maxIndexBytes)
	}
	raw, err := os.ReadFile(idx)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", idx, err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", idx, err)
	}
	if len(index.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors %s: weight_map is missing or empty", idx)
	}
	s := &Set{Dir: dir, where: map[string]*File{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	shards := map[string]*File{}
	var shardNames []string
	for _, shard := range index.WeightMap {
		if _, ok := shards[shard]; !ok {
			shards[shard] = nil
			shardNames = append(shardNames, shard)
		}
	}
	sort.Strings(shardNames)
	for _, shard := range shardNames {
		if shard == "" || shard != filepath.Base(shard) || shard == "." || shard == ".." {
			return nil, fmt.Errorf("safetensors %s: shard name %q must be a file name in the same directory", idx, shard)
		}
		p := filepath.Join(dir, shard)
		if !fileExists(p) {
			return nil, fmt.Errorf("safetensors %s: shard %s named by the index is missing", idx, shard)
		}
		f, err := Open(p)
		if err != nil {
			return nil, err
		}
		shards[shard] = f
		s.files = append(s.files, f)
	}
	for name, shard := range index.WeightMap {
		f := shards[shard]
		if !f.Has(name) {
			return nil, fmt.Errorf("safetensors %s: tensor %q: the index places it in %s, which does not hold it", idx, name, shard)
		}
		s.where[name] = f
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Names returns all tensor names, sorted.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Has reports whether the set holds the named tensor.
func (s *Set) Has(name string) bool {
	_, ok := s.where[name]
	return ok
}

// Info returns a tensor's stored dtype and shape, as File.Info does.
func (s *Set) Info(name string) (dtype string, shape []int, ok bool) {
	f, ok := s.where[name]
	if !ok {
		return "", nil, false
	}
	return f.Info(name)
}

// Tensor returns the named tensor from whichever shard holds it.
func (s *Set) Tensor(name string) (tensor.Tensor, error) {
	f, ok := s.where[name]
	if !ok {
		return tensor.Tensor{}, fmt.Errorf("safetensors %s: no tensor %q", s.Dir, name)
	}
	return f.Tensor(name)
}

// Close closes every shard.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// compose-check: checks a Compose file without a container engine.
//
// It loads the file with compose-go, the library `docker compose` itself
// uses (schema validation, interpolation, normalization, relative paths
// resolved against the project directory, consistency checks such as
// depends_on naming real services), and treats any loader warning as an
// error. Then it checks what the loader leaves to the engine, so that a
// mistake fails here and not in `docker compose up`:
//
//   - every bind-mounted host path exists (a missing one would be created by
//     the engine as an empty directory, or refused);
//   - every build context is a directory and its Dockerfile exists and
//     parses with BuildKit's own Dockerfile parser, with its build checks
//     (linter) clean; every file a Dockerfile COPYs/ADDs from the context
//     exists and is not excluded by the .dockerignore in force; every
//     COPY --from names an earlier stage or a pinned image; RUN --mount
//     options are valid; base images are pinned;
//   - every file-based config or secret exists;
//   - every image that is pulled (service or FROM) names a tag other than
//     `latest` (or a digest);
//   - a depends_on `service_healthy` points at a service with a healthcheck;
//   - no two services publish the same host port.
//
// Usage:
//
//	compose-check [-f docker-compose.yml] [-project-directory DIR] [-dockerfile PATH]...
//
// -dockerfile also checks a Dockerfile no service builds (context: the
// project directory), the same way as the services' ones.
//
// Exit status 0 when everything holds, 1 with one line per problem otherwise,
// 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/sirupsen/logrus"
)

// warnings collects what the loader logs at warning level or above.
type warnings struct{ list []string }

func (w *warnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *warnings) Fire(e *logrus.Entry) error {
	w.list = append(w.list, e.Message)
	return nil
}

type checker struct {
	projectDir string
	problems   []string
	checked    []string
}

func (c *checker) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *checker) ok(format string, args ...any) {
	c.checked = append(c.checked, fmt.Sprintf(format, args...))
}

// rel shows a path relative to the project directory when it lies inside it.
func (c *checker) rel(path string) string {
	if r, err := filepath.Rel(c.projectDir, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

func main() {
	file := flag.String("f", "docker-compose.yml", "Compose file")
	projectDir := flag.String("project-directory", "", "project directory (default: the Compose file's directory)")
	var dockerfiles multi
	flag.Var(&dockerfiles, "dockerfile", "also check this Dockerfile, built with the project directory as context (repeatable)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: compose-check [-f FILE] [-project-directory DIR] [-dockerfile PATH]...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(*file, *projectDir, dockerfiles, os.Stdout, os.Stderr))
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func run(file, projectDir string, dockerfiles []string, stdout, stderr io.Writer) int {
	abs, err := filepath.Abs(file)
	if err != nil {
		fmt.Fprintf(stderr, "compose-check: %v\n", err)
		return 1
	}
	if projectDir == "" {
		projectDir = filepath.Dir(abs)
	}
	if projectDir, err = filepath.Abs(projectDir); err != nil {
		fmt.Fprintf(stderr, "compose-check: %v\n", err)
		return 1
	}

	logrus.SetOutput(io.Discard)
	warned := &warnings{}
	logrus.AddHook(warned)

	options, err := cli.NewProjectOptions(
		[]string{abs},
		cli.WithWorkingDirectory(projectDir),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
		cli.WithLoadOptions(func(o *loader.Options) { o.SkipValidation = false }),
	)
	if err != nil {
		fmt.Fprintf(stderr, "compose-check: %s: %v\n", file, err)
		return 1
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "false schema") {
			// jsonschema's wording for a key the Compose schema does not have.
			msg += " (not a Compose key here: misspelt or misplaced?)"
		}
		fmt.Fprintf(stderr, "compose-check: %s: FAILED to load: %s\n", file, msg)
		return 1
	}

	c := &checker{projectDir: projectDir}
	for _, w := range warned.list {
		c.fail("loader warning: %s", w)
	}
	c.ok("%s loads (compose-go: schema, interpolation, paths, consistency): project %q, %d services",
		c.rel(abs), project.Name, len(project.Services))

	names := make([]string, 0, len(project.Services))
	for name := range project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	ports := map[string]string{}
	for _, name := range names {
		s := project.Services[name]
		c.checkBuild("service "+name, s.Build)
		c.checkImage(name, s)
		c.checkVolumes(name, s)
		c.checkDependencies(name, s, project)
		c.checkPorts(name, s, ports)
	}
	c.checkFileObjects(project)
	for _, d := range dockerfiles {
		if !filepath.IsAbs(d) {
			d = filepath.Join(projectDir, d)
		}
		c.checkBuild("Dockerfile "+c.rel(d), &types.BuildConfig{Context: projectDir, Dockerfile: d})
	}

	for _, line := range c.checked {
		fmt.Fprintf(stdout, "  ok  %s\n", line)
	}
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintf(stderr, "compose-check: %s: %s\n", c.rel(abs), p)
		}
		fmt.Fprintf(stderr, "compose-check: %s: FAILED, %d problem(s)\n", c.rel(abs), len(c.problems))
		return 1
	}
	fmt.Fprintf(stdout, "compose-check: %s: OK (%d checks)\n", c.rel(abs), len(c.checked))
	return 0
}

// checkBuild checks a build; name says whose in messages ("service x").
func (c *checker) checkBuild(name string, b *types.BuildConfig) {
	if b == nil {
		return
	}
	st, err := os.Stat(b.Context)
	if err != nil || !st.IsDir() {
		c.fail("%s: build context %s is not a directory", name, c.rel(b.Context))
		return
	}
	for key, ctx := range b.AdditionalContexts {
		if strings.Contains(ctx, "://") || strings.HasPrefix(ctx, "service:") || strings.HasPrefix(ctx, "docker-image:") {
			continue
		}
		if _, err := os.Stat(ctx); err != nil {
			c.fail("%s: additional build context %s=%s does not exist", name, key, c.rel(ctx))
		}
	}
	if b.DockerfileInline != "" {
		c.ok("%s: build context %s, inline Dockerfile", name, c.rel(b.Context))
		return
	}
	dockerfile := b.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(b.Context, dockerfile)
	}
	if st, err := os.Stat(dockerfile); err != nil || st.IsDir() {
		c.fail("%s: Dockerfile %s does not exist", name, c.rel(dockerfile))
		return
	}
	before := len(c.problems)
	summary, err := c.checkDockerfileSources(name, b.Context, dockerfile)
	if err != nil {
		c.fail("%s: %v", name, err)
		return
	}
	if len(c.problems) > before {
		return
	}
	c.ok("%s: build context %s, Dockerfile %s parses (BuildKit, build checks clean): %s",
		name, c.rel(b.Context), c.rel(dockerfile), summary)
}

// dockerignore returns the ignore patterns in force for a build: those of
// <Dockerfile>.dockerignore next to the Dockerfile if there is one (BuildKit's
// rule), else of <context>/.dockerignore, else none.
func dockerignore(context, dockerfile string) (string, []string, error) {
	for _, candidate := range []string{dockerfile + ".dockerignore", filepath.Join(context, ".dockerignore")} {
		f, err := os.Open(candidate)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		defer f.Close()
		patterns, err := ignorefile.ReadAll(f)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %v", candidate, err)
		}
		return candidate, patterns, nil
	}
	return "", nil, nil
}

// pinned says what is wrong with an image reference, or "" when it names a
// tag other than latest, or a digest.
func pinned(image string) string {
	if strings.Contains(image, "@sha256:") {
		return ""
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	switch {
	case i < 0:
		return "no tag"
	case last[i+1:] == "latest":
		return "tag latest"
	}
	return ""
}

// expandArgs replaces ${NAME} and $NAME by the default of a global ARG (the
// values a plain `docker compose build` uses).
func expandArgs(word string, args map[string]string) string {
	return os.Expand(word, func(name string) string { return args[name] })
}

// checkDockerfileSources parses a Dockerfile with BuildKit's parser and build
// checks, then checks its base images, COPY --from references and every
// COPY/ADD source from the build context: present, and not excluded by the
// .dockerignore in force. It returns a one-line summary.
func (c *checker) checkDockerfileSources(name, context, dockerfile string) (string, error) {
	where := c.rel(dockerfile)
	f, err := os.Open(dockerfile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ast, err := parser.Parse(f)
	if err != nil {
		return "", fmt.Errorf("%s: BuildKit cannot parse it: %v", where, err)
	}
	for _, w := range ast.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		c.fail("%s: %s:%d: %s", name, where, line, w.Short)
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, _, url, msg string, location []parser.Range) {
			line := 0
			if len(location) > 0 {
				line = location[0].Start.Line
			}
			c.fail("%s: %s:%d: build check %s: %s (%s)", name, where, line, rule, msg, url)
		},
	})
	stages, metaArgs, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		return "", fmt.Errorf("%s: %v", where, err)
	}
	args := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				args[kv.Key] = *kv.Value
			}
		}
	}

	ignoreFile, patterns, err := dockerignore(context, dockerfile)
	if err != nil {
		return "", err
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return "", fmt.Errorf("%s: %v", ignoreFile, err)
	}

	checked := 0
	checkSources := func(op string, line int, sources []string) {
		for _, src := range sources {
			if strings.Contains(src, "$") || strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
				continue // build-arg dependent or remote: cannot check here
			}
			clean := filepath.Clean(strings.TrimPrefix(src, "/"))
			if clean == "." {
				checked++
				continue
			}
			matches, _ := filepath.Glob(filepath.Join(context, clean))
			if len(matches) == 0 {
				c.fail("%s: %s:%d: %s %s: no such file in the build context %s",
					name, where, line, op, src, c.rel(context))
				continue
			}
			kept := false
			for _, m := range matches {
				r, _ := filepath.Rel(context, m)
				excluded, err := matcher.MatchesOrParentMatches(filepath.ToSlash(r))
				if err == nil && !excluded {
					kept = true
				}
			}
			if !kept {
				c.fail("%s: %s:%d: %s %s: excluded from the build context by %s",
					name, where, line, op, src, c.rel(ignoreFile))
				continue
			}
			checked++
		}
	}

	known := map[string]bool{}
	var bases []string
	for i, stage := range stages {
		base := expandArgs(stage.BaseName, args)
		label := stage.Name
		if label == "" {
			label = fmt.Sprintf("#%d", i)
		}
		if known[strings.ToLower(base)] {
			bases = append(bases, fmt.Sprintf("%s (stage %s)", label, base))
		} else {
			if base == "" || base == "scratch" {
				// nothing to pull
			} else if why := pinned(base); why != "" {
				c.fail("%s: %s: stage %s: base image %s has %s: pin a tag", name, where, label, base, why)
			}
			bases = append(bases, fmt.Sprintf("%s (%s)", label, base))
		}
		for _, cmd := range stage.Commands {
			line := 0
			if loc := cmd.Location(); len(loc) > 0 {
				line = loc[0].Start.Line
			}
			switch cmd := cmd.(type) {
			case *instructions.CopyCommand:
				if cmd.From == "" {
					checkSources("COPY", line, cmd.SourcePaths)
					continue
				}
				from := strings.ToLower(expandArgs(cmd.From, args))
				if known[from] {
					continue
				}
				if n, err := fmt.Sscanf(from, "%d", new(int)); err == nil && n == 1 {
					continue // stage index
				}
				if why := pinned(from); why != "" {
					c.fail("%s: %s:%d: COPY --from=%s is no earlier stage, and as an image it has %s",
						name, where, line, cmd.From, why)
				}
			case *instructions.AddCommand:
				checkSources("ADD", line, cmd.SourcePaths)
			case *instructions.RunCommand:
				// The parser leaves RUN --mount options to the build; check them
				// now, as the build would (global ARG defaults expanded).
				expand := func(word string) (string, error) { return expandArgs(word, args), nil }
				if err := cmd.Expand(expand); err != nil {
					c.fail("%s: %s:%d: RUN: %v", name, where, line, err)
				}
			}
		}
		if stage.Name != "" {
			known[strings.ToLower(stage.Name)] = true
		}
	}
	return fmt.Sprintf("stages %s; %d COPY/ADD sources present and not ignored", strings.Join(bases, ", "), checked), nil
}

func (c *checker) checkImage(name string, s types.ServiceConfig) {
	if s.Build != nil {
		return // built here, not pulled
	}
	if s.Image == "" {
		c.fail("service %s: neither image nor build", name)
		return
	}
	if why := pinned(s.Image); why != "" {
		c.fail("service %s: image %s has %s: pin a tag", name, s.Image, why)
		return
	}
	c.ok("service %s: image %s", name, s.Image)
}

func (c *checker) checkVolumes(name string, s types.ServiceConfig) {
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		st, err := os.Stat(v.Source)
		if err != nil {
			c.fail("service %s: bind mount %s -> %s: host path does not exist", name, c.rel(v.Source), v.Target)
			continue
		}
		kind := "file"
		if st.IsDir() {
			kind = "directory"
		}
		mode := "read-write"
		if v.ReadOnly {
			mode = "read-only"
		}
		c.ok("service %s: bind mount %s (%s) -> %s, %s", name, c.rel(v.Source), kind, v.Target, mode)
	}
}

func (c *checker) checkDependencies(name string, s types.ServiceConfig, p *types.Project) {
	deps := make([]string, 0, len(s.DependsOn))
	for dep := range s.DependsOn {
		deps = append(deps, dep)
	}
	sort.Strings(deps)
	for _, dep := range deps {
		d := s.DependsOn[dep]
		if d.Condition != types.ServiceConditionHealthy {
			continue
		}
		target, ok := p.Services[dep]
		if !ok {
			continue // the loader's consistency check reports it
		}
		if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
			c.fail("service %s: depends on %s being healthy, but %s declares no healthcheck", name, dep, dep)
			continue
		}
		c.ok("service %s: waits for %s to be healthy (%s)", name, dep, strings.Join(target.HealthCheck.Test, " "))
	}
}

func (c *checker) checkPorts(name string, s types.ServiceConfig, seen map[string]string) {
	for _, port := range s.Ports {
		if port.Published == "" {
			continue
		}
		protocol := port.Protocol
		if protocol == "" {
			protocol = "tcp"
		}
		host := port.HostIP
		if host == "" {
			host = "0.0.0.0"
		}
		key := fmt.Sprintf("%s:%s/%s", host, port.Published, protocol)
		if other, ok := seen[key]; ok {
			c.fail("service %s: publishes %s, as does service %s", name, key, other)
			continue
		}
		seen[key] = name
		c.ok("service %s: publishes %s -> %d", name, key, port.Target)
	}
}

func (c *checker) checkFileObjects(p *types.Project) {
	check := func(kind, name string, o types.FileObjectConfig) {
		if o.File == "" || bool(o.External) {
			return
		}
		if _, err := os.Stat(o.File); err != nil {
			c.fail("%s %s: file %s does not exist", kind, name, c.rel(o.File))
			return
		}
		c.ok("%s %s: file %s", kind, name, c.rel(o.File))
	}
	for name, cfg := range p.Configs {
		check("config", name, types.FileObjectConfig(cfg))
	}
	for name, secret := range p.Secrets {
		check("secret", name, types.FileObjectConfig(secret))
	}
}

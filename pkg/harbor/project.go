package harbor

import (
	"context"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/swag"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/project"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/project_metadata"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/client/repository"
	"github.com/goharbor/go-client/pkg/sdk/v2.0/models"
)

// Project metadata keys (values are strings: "true", "false"; HARBOR.md §7).
const (
	MetadataPublic   = "public"
	MetadataAutoScan = "auto_scan"
)

// Project is a Harbor project.
type Project struct {
	ID        int64
	Name      string
	OwnerName string
	RepoCount int64
	// Metadata are the project's settings as Harbor keeps them, strings all (public, auto_scan, severity,
	// prevent_vul, retention_id, …).
	Metadata     map[string]string
	CreationTime time.Time
	UpdateTime   time.Time
}

// Public reports whether the project is readable anonymously.
func (p Project) Public() bool { return p.Metadata[MetadataPublic] == "true" }

// AutoScan reports whether Harbor scans what is pushed to the project.
func (p Project) AutoScan() bool { return p.Metadata[MetadataAutoScan] == "true" }

// ProjectSpec is a project to create.
type ProjectSpec struct {
	Name string
	// Public makes the project readable anonymously.
	Public bool
	// AutoScan scans every artifact pushed (or copied) into the project.
	AutoScan bool
}

// Projects lists every project the account sees.
func (c *Client) Projects(ctx context.Context) ([]Project, error) {
	return list(ctx, c, "listing projects", "", func(ctx context.Context, page, size int64) ([]Project, int64, error) {
		ok, err := c.api.Project.ListProjects(ctx, &project.ListProjectsParams{Page: &page, PageSize: &size, Context: ctx})
		if err != nil {
			return nil, 0, err
		}
		return convert(ok.Payload, projectOf), ok.XTotalCount, nil
	})
}

// Project reads one project by name.
func (c *Client) Project(ctx context.Context, name string) (*Project, error) {
	var p Project
	_, err := c.call(ctx, "getting project", name, func(ctx context.Context) error {
		ok, err := c.api.Project.GetProject(ctx, &project.GetProjectParams{ProjectNameOrID: name, XIsResourceName: swag.Bool(true), Context: ctx})
		if err == nil && ok.Payload != nil {
			p = projectOf(ok.Payload)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// ProjectMetadata reads a project's metadata (public, auto_scan, …).
func (c *Client) ProjectMetadata(ctx context.Context, name string) (map[string]string, error) {
	var md map[string]string
	_, err := c.call(ctx, "getting metadata of project", name, func(ctx context.Context) error {
		ok, err := c.api.ProjectMetadata.ListProjectMetadatas(ctx, &project_metadata.ListProjectMetadatasParams{
			ProjectNameOrID: name, XIsResourceName: swag.Bool(true), Context: ctx})
		if err == nil {
			md = ok.Payload
		}
		return err
	})
	if md == nil && err == nil {
		md = map[string]string{}
	}
	return md, err
}

// CreateProject creates a project and returns its id.
func (c *Client) CreateProject(ctx context.Context, spec ProjectSpec) (int64, error) {
	const op = "creating project"
	md := &models.ProjectMetadata{Public: boolString(spec.Public)}
	if spec.AutoScan {
		md.AutoScan = swag.String("true")
	}
	var loc string
	x, err := c.call(ctx, op, spec.Name, func(ctx context.Context) error {
		ok, err := c.api.Project.CreateProject(ctx, &project.CreateProjectParams{
			Project: &models.ProjectReq{ProjectName: spec.Name, Metadata: md}, Context: ctx})
		if err == nil {
			loc = ok.Location
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	id, ok := idFromLocation(loc)
	if !ok {
		return 0, unexpected(op, spec.Name, x, "no project id in Location %q", loc)
	}
	return id, nil
}

// DeleteProject deletes an empty project (Harbor answers 412 while it holds repositories).
func (c *Client) DeleteProject(ctx context.Context, name string) error {
	_, err := c.call(ctx, "deleting project", name, func(ctx context.Context) error {
		_, err := c.api.Project.DeleteProject(ctx, &project.DeleteProjectParams{ProjectNameOrID: name, XIsResourceName: swag.Bool(true), Context: ctx})
		return err
	})
	return err
}

// Repository is a repository of a project.
type Repository struct {
	ID        int64
	ProjectID int64
	// Name is the full name, project/repository (HARBOR.md §3.2).
	Name          string
	ArtifactCount int64
	PullCount     int64
	CreationTime  time.Time
	UpdateTime    time.Time
}

// Repositories lists every repository of a project.
func (c *Client) Repositories(ctx context.Context, projectName string) ([]Repository, error) {
	return list(ctx, c, "listing repositories of project", projectName, func(ctx context.Context, page, size int64) ([]Repository, int64, error) {
		ok, err := c.api.Repository.ListRepositories(ctx, &repository.ListRepositoriesParams{
			ProjectName: projectName, Page: &page, PageSize: &size, Context: ctx})
		if err != nil {
			return nil, 0, err
		}
		out := make([]Repository, 0, len(ok.Payload))
		for _, r := range ok.Payload {
			if r == nil {
				continue
			}
			rp := Repository{ID: r.ID, ProjectID: r.ProjectID, Name: r.Name, ArtifactCount: r.ArtifactCount,
				PullCount: r.PullCount, UpdateTime: timeOf(r.UpdateTime)}
			if r.CreationTime != nil {
				rp.CreationTime = timeOf(*r.CreationTime)
			}
			out = append(out, rp)
		}
		return out, ok.XTotalCount, nil
	})
}

func projectOf(p *models.Project) Project {
	return Project{ID: int64(p.ProjectID), Name: p.Name, OwnerName: p.OwnerName, RepoCount: p.RepoCount,
		Metadata: metadataOf(p.Metadata), CreationTime: timeOf(p.CreationTime), UpdateTime: timeOf(p.UpdateTime)}
}

func metadataOf(m *models.ProjectMetadata) map[string]string {
	md := map[string]string{}
	if m == nil {
		return md
	}
	if m.Public != "" {
		md[MetadataPublic] = m.Public
	}
	for k, v := range map[string]*string{
		MetadataAutoScan:              m.AutoScan,
		"auto_sbom_generation":        m.AutoSbomGeneration,
		"enable_content_trust":        m.EnableContentTrust,
		"enable_content_trust_cosign": m.EnableContentTrustCosign,
		"prevent_vul":                 m.PreventVul,
		"proxy_speed_kb":              m.ProxySpeedKb,
		"retention_id":                m.RetentionID,
		"reuse_sys_cve_allowlist":     m.ReuseSysCVEAllowlist,
		"severity":                    m.Severity,
	} {
		if v != nil {
			md[k] = *v
		}
	}
	return md
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func timeOf(t strfmt.DateTime) time.Time {
	tt := time.Time(t)
	if tt.IsZero() || tt.Year() <= 1 {
		return time.Time{}
	}
	return tt
}
